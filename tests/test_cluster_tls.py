"""TLSMaterial: what a job script writes, where, with which modes, and that it is removed;
a scheduler using the material refuses plain TCP and TLS without the certificate."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import time

import pytest

from dabc.cluster.tls import TLS_DIR_VARIABLE, TLSMaterial


@pytest.fixture(scope="module")
def material():
    return TLSMaterial.create()


def _job(material, tmp_path, body: str) -> subprocess.Popen:
    script = tmp_path / "job.sh"
    script.write_text("\n".join(["#!/bin/bash", *material.job_script_lines(), body]) + "\n")
    return subprocess.Popen(["bash", str(script)], env={**os.environ, "TMPDIR": str(tmp_path)},
                            stdout=subprocess.PIPE, text=True)


def test_job_script_writes_private_files_and_removes_them_at_exit(material, tmp_path):
    var = TLS_DIR_VARIABLE
    proc = _job(material, tmp_path, f'echo "${var}"; cat "${var}/key.pem"')
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    directory, key = out.split("\n", 1)
    assert key.strip() == material.key_pem.strip()
    assert directory.startswith(str(tmp_path))
    assert not os.path.exists(directory)  # removed by the EXIT trap


def test_files_are_0600_in_a_0700_directory_and_removed_on_sigterm(material, tmp_path):
    body = f'echo "${TLS_DIR_VARIABLE}"; sleep 60 & wait'
    proc = _job(material, tmp_path, body)
    directory = proc.stdout.readline().strip()
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    names = sorted(os.listdir(directory))
    assert names == ["ca.pem", "cert.pem", "key.pem"]
    for name in names:
        assert stat.S_IMODE(os.stat(os.path.join(directory, name)).st_mode) == 0o600
    proc.send_signal(signal.SIGTERM)  # what scancel and a walltime kill send first
    proc.wait(timeout=30)
    assert proc.returncode == 143
    assert not os.path.exists(directory)


def test_repr_and_file_security_never_show_the_key(material):
    assert "PRIVATE" not in repr(material)
    conf = material.file_security().get_tls_config_for_role("worker")
    assert conf["key"] == f"${TLS_DIR_VARIABLE}/key.pem"
    assert all("\n" not in str(v) for v in conf.values())
    assert TLSMaterial.from_json(material.to_json()) == material


def test_a_scheduler_with_the_material_refuses_tcp_and_strangers(material):
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, processes=False, protocol="tls://", host="127.0.0.1",
                      security=material.security(), dashboard_address=None) as cluster:
        address = cluster.scheduler_address
        assert address.startswith("tls://127.0.0.1:")
        with Client(address, security=material.security(), timeout=20) as client:
            assert client.submit(sum, [1, 2]).result(timeout=20) == 3
        plain = address.replace("tls://", "tcp://")
        started = time.monotonic()
        with pytest.raises(OSError):
            Client(plain, timeout=3)
        assert time.monotonic() - started < 30
        stranger = TLSMaterial.create()  # a certificate from another CA
        with pytest.raises(OSError):
            Client(address, security=stranger.security(), timeout=3)
