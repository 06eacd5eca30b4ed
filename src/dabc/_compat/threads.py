"""Raising an exception in another thread: ``ctypes.pythonapi.PyThreadState_SetAsyncExc``.

What it relies on: CPython's C API function ``PyThreadState_SetAsyncExc(unsigned long id,
PyObject *exc)``, reached through ``ctypes.pythonapi``. It schedules ``exc`` (a class) to be
raised in the thread ``id`` the next time that thread executes Python bytecode, so it
interrupts Python loops but neither a C call that holds the GIL nor a blocking ``time.sleep``
(those raise once they return). Passing NULL clears a pending exception.

Checked on CPython 3.10 to 3.13 (3.11.7 installed when this was written).

Fallback: on other interpreters (no ``ctypes.pythonapi``, e.g. PyPy) :func:`async_raise`
returns False and nothing is raised; the samplers' ``simulation_timeout`` then cannot stop a
simulation in a worker *thread* (processes still use ``SIGALRM``).
"""

from __future__ import annotations

import ctypes

_SET_ASYNC_EXC = getattr(getattr(ctypes, "pythonapi", None), "PyThreadState_SetAsyncExc", None)


def async_raise(thread_id: int, exc: type[BaseException] | None) -> bool:
    """Schedule ``exc`` in thread ``thread_id`` (None clears a pending one).

    Returns whether exactly one thread state was affected.
    """
    if _SET_ASYNC_EXC is None:
        return False
    arg = None if exc is None else ctypes.py_object(exc)
    n = _SET_ASYNC_EXC(ctypes.c_ulong(thread_id), arg)
    if n > 1:  # cannot happen for a valid id; undo as the C API documentation says
        _SET_ASYNC_EXC(ctypes.c_ulong(thread_id), None)
        return False
    return n == 1


def available() -> bool:
    """Whether :func:`async_raise` can work on this interpreter."""
    return _SET_ASYNC_EXC is not None
