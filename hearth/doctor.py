"""``hearth doctor``: what this machine has, whether llama.cpp works on it, and how to fix what
does not. Each check returns a :class:`Check` (ok / warn / fail, a message, a fix), and the pure
ones take the text of ``/proc`` files or command output as arguments, so tests can feed fakes.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import httpx

from hearth.config import Settings
from hearth.units import format_size

AMX_SAFE_CMAKE_ARGS = (
    'CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON '
    "-DGGML_BMI2=ON -DGGML_AVX512=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON "
    '-DGGML_AVX512_VBMI=ON -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF" '
    "pip install --no-cache-dir --force-reinstall llama-cpp-python (or: make setup)"
)
LOW_MEMORY = 1 << 30
SMOKE_TIMEOUT = 180


class Status(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    message: str
    fix: str = ""


def check_cores(count: int | None) -> Check:
    return Check("cpu cores", Status.OK if count else Status.WARN, f"{count or 'unknown'} cores")


def check_memory(meminfo: dict[str, int]) -> Check:
    total, available = meminfo.get("MemTotal", 0), meminfo.get("MemAvailable", 0)
    message = f"{format_size(total)} total, {format_size(available)} available"
    if available < LOW_MEMORY:
        return Check("memory", Status.WARN, message, "close other programs or use a smaller model")
    return Check("memory", Status.OK, message)


def cpu_flags(cpuinfo: str) -> set[str]:
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return set(value.split())
    return set()


def check_cpu_features(flags: set[str]) -> Check:
    wanted = ["avx2", "fma", "f16c"]
    shown = [f for f in sorted(flags) if f in wanted or f.startswith(("avx512", "amx"))]
    missing = [f for f in wanted if f not in flags]
    if missing:
        return Check(
            "cpu features",
            Status.WARN,
            f"missing {', '.join(missing)}: llama.cpp runs slowly",
            "use a machine with AVX2/FMA for usable speed",
        )
    return Check("cpu features", Status.OK, " ".join(shown))


def build_flags(system_info: str) -> dict[str, bool]:
    """``"AVX2 = 1 | AMX_INT8 = 1 | ..."`` (llama_print_system_info) → {"AVX2": True, ...}."""
    flags = {}
    for part in system_info.replace("CPU :", "|").split("|"):
        key, equals, value = part.partition("=")
        if equals:
            flags[key.strip()] = value.strip() == "1"
    return flags


def check_build(system_info: str, flags: set[str]) -> Check:
    """The llama.cpp build's flags; fail when it uses AMX on a CPU that advertises it (AMX
    instructions crash on this class of machine: SIGSEGV/SIGILL in llama_decode)."""
    built = build_flags(system_info)
    enabled = " ".join(name for name, on in built.items() if on) or "no flags reported"
    amx_built = [name for name, on in built.items() if on and name.startswith("AMX")]
    if amx_built and any(flag.startswith("amx") for flag in flags):
        return Check(
            "llama.cpp build",
            Status.FAIL,
            f"built with {', '.join(amx_built)} on a CPU advertising AMX (crashes here)",
            f"rebuild without AMX: {AMX_SAFE_CMAKE_ARGS}",
        )
    return Check("llama.cpp build", Status.OK, enabled)


def parse_nvidia_smi(output: str) -> list[str]:
    """Lines of ``nvidia-smi --query-gpu=name,memory.total --format=csv,noheader``."""
    return [line.strip() for line in output.splitlines() if line.strip()]


def check_gpu(gpus: list[str] | None) -> Check:
    if gpus is None:
        return Check("gpu", Status.OK, "none (nvidia-smi not found); llama.cpp runs on the CPU")
    if not gpus:
        return Check("gpu", Status.OK, "none")
    return Check("gpu", Status.OK, "; ".join(gpus))


def check_smoke(returncode: int | None, output: str) -> Check:
    """Result of ``python -m hearth.devtools.smoke`` (None: it timed out)."""
    if returncode == 0:
        return Check("smoke test", Status.OK, "one-token decode works")
    why = "timed out" if returncode is None else f"exit status {returncode}"
    if returncode is not None and returncode < 0:
        why = f"killed by signal {-returncode} (an instruction this CPU cannot run?)"
    tail = output.strip().splitlines()[-1:] or [""]
    return Check(
        "smoke test",
        Status.FAIL,
        f"decoding one token failed: {why} {tail[0]}".strip(),
        f"rebuild llama.cpp: {AMX_SAFE_CMAKE_ARGS}",
    )


def check_port(host: str, listening: bool, is_hearth: bool) -> Check:
    if not listening:
        return Check("serve port", Status.OK, f"{host} is free")
    if is_hearth:
        return Check("serve port", Status.OK, f"a Hearth server answers on {host}")
    return Check(
        "serve port",
        Status.FAIL,
        f"{host} is in use by something that is not Hearth",
        "stop that program, or set HEARTH_HOST to another address (e.g. 127.0.0.1:11436)",
    )


@dataclass(frozen=True)
class ModelFit:
    name: str
    need: int
    budget: int
    fitting_quant: str | None = None  # the largest quantization that would fit (hearth plan)


def check_models(fits: list[ModelFit]) -> Check:
    if not fits:
        return Check("models", Status.OK, "no models in the store")
    too_big = [f for f in fits if f.need > f.budget]
    summary = ", ".join(f"{f.name} {format_size(f.need)}" for f in fits)
    if too_big:
        names = ", ".join(
            f.name + (f" (fits as {f.fitting_quant})" if f.fitting_quant else "") for f in too_big
        )
        return Check(
            "models",
            Status.WARN,
            f"need more than the budget ({format_size(too_big[0].budget)}): {names}",
            "lower HEARTH_CONTEXT / HEARTH_MAX_SEQS, raise HEARTH_MAX_MEMORY, or quantize "
            "smaller (hearth plan NAME shows what fits)",
        )
    return Check("models", Status.OK, f"all fit the budget: {summary}")


# Gathering real facts (thin wrappers around the pure checks) --------------------------------------


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def probe_gpus() -> list[str] | None:
    if shutil.which("nvidia-smi") is None:
        return None
    query = ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"]
    try:
        done = subprocess.run(query, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return parse_nvidia_smi(done.stdout) if done.returncode == 0 else []


def probe_smoke() -> Check:
    command = [sys.executable, "-m", "hearth.devtools.smoke"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=SMOKE_TIMEOUT)
    except subprocess.TimeoutExpired:
        return check_smoke(None, "")
    return check_smoke(done.returncode, done.stdout + done.stderr)


def probe_port(host: str) -> Check:
    address, _, port = host.rpartition(":")
    try:
        with socket.create_connection((address or "127.0.0.1", int(port)), timeout=1):
            pass
    except (OSError, ValueError):
        return check_port(host, listening=False, is_hearth=False)
    try:
        health = httpx.get(f"http://{host}/health", timeout=2)
        is_hearth = health.status_code == 200 and health.json().get("status") == "ok"
    except (httpx.HTTPError, ValueError):
        is_hearth = False
    return check_port(host, listening=True, is_hearth=is_hearth)


def probe_models(settings: Settings) -> Check:
    from hearth.engine.llm import EngineConfig
    from hearth.engine.memory import estimate_memory
    from hearth.errors import HearthError
    from hearth.plan import PlanRequest, make_plan, read_local_header
    from hearth.store import Store

    config = EngineConfig.from_settings(settings)
    fits = []
    for model in Store(settings).list():
        try:
            need = estimate_memory(model, config).total
            quant = None
            if need > settings.max_memory:  # which quantization would fit, at these settings
                request = PlanRequest(config.context, config.max_seqs, settings.max_memory)
                quant = make_plan(read_local_header(model.model_path), request).recommended
        except HearthError:
            continue
        fits.append(ModelFit(str(model.name), need, settings.max_memory, quant))
    return check_models(fits)


def run_checks(settings: Settings, *, smoke: bool = True) -> list[Check]:
    import os

    import llama_cpp

    from hearth.plan import parse_meminfo

    flags = cpu_flags(_read("/proc/cpuinfo"))
    system_info = llama_cpp.llama_print_system_info().decode(errors="replace")
    checks = [
        check_cores(os.cpu_count()),
        check_memory(parse_meminfo(_read("/proc/meminfo"))),
        check_gpu(probe_gpus()),
        check_cpu_features(flags),
        check_build(system_info, flags),
    ]
    if smoke:
        checks.append(probe_smoke())
    checks += [probe_models(settings), probe_port(settings.host)]
    return checks
