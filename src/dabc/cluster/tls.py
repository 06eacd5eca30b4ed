"""TLS material for one cluster, delivered to workers without a shared filesystem.

Dask's TLS needs every worker to present a certificate signed by the cluster's CA. On a
cluster the obvious way, files in the shared home directory, leaves a key readable by
anyone who can read that directory (backups, other groups' admins, a mis-set umask), and
dask-jobqueue supports no other way (its TLS-without-shared-filesystem test is an expected
failure). Here a throw-away certificate authority and certificate are made in memory for
each cluster (:meth:`TLSMaterial.create`). Workers receive them *inside their job script*:
the script, which SLURM keeps in its own spool (readable by root and the job's user only),
writes them to a fresh node-local directory with mode 0700/0600 and removes it when the job
ends (:meth:`TLSMaterial.job_script_lines`), so nothing travels through the shared home
directory. The scheduler and clients keep the material in memory only
(:meth:`TLSMaterial.security`).

One certificate serves all roles (scheduler, workers, clients), as in
``distributed.Security.temporary``: whoever holds it is part of the cluster, and nobody
else can connect: the scheduler requires encryption and a certificate signed by the CA, so
a plain ``tcp://`` connection or a TLS one without the certificate is refused.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

__all__ = ["TLSMaterial", "TLS_DIR_VARIABLE", "private_dir_lines"]

#: The shell variable a job script sets to its node-local TLS directory.
TLS_DIR_VARIABLE = "DABC_TLS_DIR"

_FILES = (("ca_file", "ca.pem"), ("cert", "cert.pem"), ("key", "key.pem"))


def private_dir_lines() -> list[str]:
    """Bash lines that make a node-local private directory for one job, removed at its end.

    The directory is made with ``mktemp -d`` under ``$TMPDIR`` (``/tmp`` when that is unset
    or does not exist on the node: sbatch passes the submitting shell's TMPDIR), with mode
    0700, and its path is put in ``$DABC_TLS_DIR``. Traps remove it when the script exits,
    normally or by SIGTERM (scancel, the walltime) or SIGINT.

    Returns
    -------
    list of str
        Lines for the start of a bash job script.
    """
    var = TLS_DIR_VARIABLE
    return [
        f'{var}=$(mktemp -d "${{TMPDIR:-/tmp}}/dabc-tls-XXXXXXXX" 2>/dev/null '
        '|| mktemp -d /tmp/dabc-tls-XXXXXXXX) || exit 1',
        f'chmod 0700 "${var}"',
        f"trap 'rm -rf \"${var}\"' EXIT",
        # a SIGTERM (scancel, walltime) would otherwise end bash without the EXIT trap
        "trap 'exit 143' TERM",
        "trap 'exit 130' INT",
    ]


@dataclass(frozen=True, repr=False)
class TLSMaterial:
    """A cluster's CA certificate, and the certificate and key every member presents.

    Parameters
    ----------
    ca_pem : str
        The CA certificate (PEM).
    cert_pem : str
        The certificate signed by that CA (PEM), used by every role.
    key_pem : str
        The certificate's private key (PEM, unencrypted: keep it in memory or in 0600 files).
    """

    ca_pem: str
    cert_pem: str
    key_pem: str

    def __repr__(self) -> str:  # never show the key in a traceback or a log
        return "TLSMaterial(<CA certificate, certificate, private key>)"

    @classmethod
    def create(cls) -> TLSMaterial:
        """Make a new self-signed CA and certificate, in memory.

        Returns
        -------
        TLSMaterial
            Fresh material, valid for all roles of one cluster.

        Raises
        ------
        dabc.InputError
            When the ``cryptography`` package is missing (``pip install 'dabc[cluster]'``).
        """
        from ..errors import InputError

        try:
            import cryptography  # noqa: F401
            from distributed import Security
        except ImportError as exc:
            raise InputError("TLS for Dask clusters needs the 'cryptography' and "
                             "'distributed' packages: pip install 'dabc[cluster]'") from exc
        sec = Security.temporary()
        conf = sec.get_tls_config_for_role("worker")
        return cls(conf["ca_file"], conf["cert"], conf["key"])

    def security(self) -> Any:
        """A ``distributed.Security`` holding this material in memory, encryption required.

        Returns
        -------
        distributed.Security
            For the scheduler, a client or an in-process worker.
        """
        from distributed import Security

        kwargs = {}
        for role in ("scheduler", "worker", "client"):
            kwargs[f"tls_{role}_cert"] = self.cert_pem
            kwargs[f"tls_{role}_key"] = self.key_pem
        return Security(tls_ca_file=self.ca_pem, require_encryption=True, **kwargs)

    def file_security(self, directory: str = f"${TLS_DIR_VARIABLE}") -> Any:
        """A ``distributed.Security`` naming files in ``directory`` instead of holding PEM.

        This is what a worker's command line is built from: ``--tls-ca-file
        $DABC_TLS_DIR/ca.pem --tls-cert ... --tls-key ...``, paths the job script expands
        after writing the files (:meth:`job_script_lines`).

        Parameters
        ----------
        directory : str, default "$DABC_TLS_DIR"
            The directory, usually a shell variable set by the job script.

        Returns
        -------
        distributed.Security
            With file paths only.
        """
        from distributed import Security

        paths = {key: f"{directory}/{name}" for key, name in _FILES}
        return Security(tls_ca_file=paths["ca_file"], tls_worker_cert=paths["cert"],
                        tls_worker_key=paths["key"], tls_client_cert=paths["cert"],
                        tls_client_key=paths["key"], require_encryption=True)

    def job_script_lines(self) -> list[str]:
        """Shell lines that write the material to a node-local directory for one job.

        The directory is made with ``mktemp -d`` under ``$TMPDIR`` (node-local on SLURM
        nodes; ``/tmp`` when it is unset or does not exist on the node) with mode 0700, the
        files with mode 0600, and a trap removes the directory when the job script exits
        (normally, by ``scancel`` or by the walltime's SIGTERM). The directory's path is in
        ``$DABC_TLS_DIR``.

        Returns
        -------
        list of str
            Lines for the start of a bash job script (dask-jobqueue's
            ``job_script_prologue``).
        """
        var = TLS_DIR_VARIABLE
        lines = private_dir_lines() + ["(", "umask 077"]
        pems = {"ca_file": self.ca_pem, "cert": self.cert_pem, "key": self.key_pem}
        for key, name in _FILES:
            lines.append(f'base64 -d > "${var}/{name}" <<\'DABC_TLS_EOF\'')
            lines.extend(base64.encodebytes(pems[key].encode()).decode().split())
            lines.append("DABC_TLS_EOF")
        lines.append(")")
        return lines

    def to_json(self) -> str:
        """The material as JSON text (for a 0600 connection file).

        Returns
        -------
        str
            ``{"ca": ..., "cert": ..., "key": ...}``.
        """
        return json.dumps({"ca": self.ca_pem, "cert": self.cert_pem, "key": self.key_pem})

    @classmethod
    def from_json(cls, text: str | dict) -> TLSMaterial:
        """Read material written by :meth:`to_json` (text or the parsed dict).

        Parameters
        ----------
        text : str or dict
            What :meth:`to_json` returned, or ``json.loads`` of it.

        Returns
        -------
        TLSMaterial
            The material.
        """
        d = json.loads(text) if isinstance(text, str) else text
        return cls(d["ca"], d["cert"], d["key"])
