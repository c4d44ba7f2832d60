"""Privacy proof: Hearth's whole local flow (import a GGUF, quantize, serve, chat over the API,
`hearth run` in-process and through the server, the dashboard) runs in a network namespace that
has only loopback, under ``strace -f``, which records every address any process of it tries to
reach (connect, sendto, sendmsg). Every one must be loopback or a local socket (AF_UNIX;
AF_NETLINK, the kernel). The server's log must hold neither the prompt nor the answers.

Needs ``unshare`` (util-linux) with user namespaces, and ``strace``
(scripts/install_system_deps.sh installs it).
"""

from __future__ import annotations

import ipaddress
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

FLOW = Path(__file__).with_name("offline_flow.py")
REPO = Path(__file__).resolve().parents[2]
PROMPT = "PRIVATE-prompt-heron-4471"
TRACED_CALLS = "trace=connect,sendto,sendmsg,sendmmsg"
LOCAL_FAMILIES = {"AF_UNIX", "AF_NETLINK", "AF_UNSPEC"}
_ADDRESS = re.compile(
    r"sa_family=(?P<family>AF_\w+)"
    r'(?:.*?inet_addr\("(?P<v4>[^"]+)"\)|.*?inet_pton\(AF_INET6, "(?P<v6>[^"]+)")?'
)


def reached_addresses(trace: str) -> list[tuple[str, str]]:
    """(family, address) of every socket address in an strace log."""
    found = []
    for line in trace.splitlines():
        for match in _ADDRESS.finditer(line):
            found.append((match["family"], match["v4"] or match["v6"] or ""))
    return found


def is_local(family: str, address: str) -> bool:
    if family in LOCAL_FAMILIES:
        return True
    if family not in ("AF_INET", "AF_INET6") or not address:
        return False
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def test_the_parser_sees_what_strace_writes() -> None:
    trace = "\n".join(
        [
            '7 connect(3, {sa_family=AF_INET, sin_port=htons(80), sin_addr=inet_addr("1.2.3.4")},'
            " 16) = -1 ENETUNREACH (Network is unreachable)",
            "8 connect(5, {sa_family=AF_INET6, sin6_port=htons(443), sin6_flowinfo=htonl(0),"
            ' inet_pton(AF_INET6, "::1", &sin6_addr), sin6_scope_id=0}, 28) = 0',
            '9 connect(4, {sa_family=AF_UNIX, sun_path="/run/nscd/socket"}, 110) = -1 ENOENT',
            '9 sendto(4, "x", 1, 0, {sa_family=AF_INET, sin_port=htons(53), sin_addr=inet_addr('
            '"10.0.0.53")}, 16) = 1',
        ]
    )
    found = reached_addresses(trace)
    assert found == [
        ("AF_INET", "1.2.3.4"),
        ("AF_INET6", "::1"),
        ("AF_UNIX", ""),
        ("AF_INET", "10.0.0.53"),
    ]
    assert [is_local(*f) for f in found] == [False, True, True, False]


def test_nothing_leaves_the_machine(tmp_path: Path, tiny_chat_model: Path) -> None:
    for tool in ("unshare", "strace", "ip"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed: run scripts/install_system_deps.sh")
    trace_file, result = tmp_path / "trace.log", tmp_path / "result.json"
    traced = (
        f"strace -f -qq -e {TRACED_CALLS} -e signal=none -s 8 -o {trace_file}"
        f" {sys.executable} {FLOW} {tmp_path / 'home'} {tiny_chat_model} {PROMPT} {result}"
    )
    run = subprocess.run(
        ["unshare", "-rn", "sh", "-c", f"ip link set lo up && exec {traced}"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    addresses = reached_addresses(trace_file.read_text())
    assert ("AF_INET", "127.0.0.1") in addresses  # the recorder saw the flow's own traffic
    assert [a for a in addresses if not is_local(*a)] == []
    outcome = json.loads(result.read_text())
    assert outcome["server_status"] == 0
    server_log = (tmp_path / "serve.log").read_text()
    assert "Hearth listening" in server_log
    for text in (PROMPT, *(c.strip() for c in outcome["completions"] if len(c.strip()) >= 8)):
        assert text not in server_log
