"""Doctor's pure checks, fed the text of /proc files and command output."""

from __future__ import annotations

from hearth.doctor import (
    AMX_SAFE_CMAKE_ARGS,
    ModelFit,
    Status,
    build_flags,
    check_build,
    check_cores,
    check_cpu_features,
    check_gpu,
    check_memory,
    check_models,
    check_port,
    check_smoke,
    cpu_flags,
    parse_nvidia_smi,
)
from hearth.plan import parse_meminfo

CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
flags\t\t: fpu sse2 avx avx2 fma f16c avx512f avx512bw avx512_vnni amx_tile amx_int8 amx_bf16
processor\t: 1
flags\t\t: fpu sse2 avx avx2 fma f16c avx512f avx512bw avx512_vnni amx_tile amx_int8 amx_bf16
"""
SAFE_BUILD = "CPU : SSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | AVX512 = 1 | OPENMP = 1 | "
AMX_BUILD = SAFE_BUILD + "AMX_INT8 = 1 | "


def test_cpu_flags_and_features() -> None:
    flags = cpu_flags(CPUINFO)
    assert {"avx2", "avx512f", "amx_tile"} <= flags
    check = check_cpu_features(flags)
    assert check.status is Status.OK
    assert "amx_int8" in check.message and "avx512_vnni" in check.message
    old = check_cpu_features({"sse2", "avx"})
    assert old.status is Status.WARN and "avx2" in old.message and old.fix


def test_build_flags_are_parsed() -> None:
    flags = build_flags(AMX_BUILD)
    assert flags["AVX2"] and flags["AMX_INT8"] and flags["SSE3"]


def test_an_amx_build_on_an_amx_cpu_fails_with_the_cmake_args() -> None:
    check = check_build(AMX_BUILD, cpu_flags(CPUINFO))
    assert check.status is Status.FAIL
    assert "AMX_INT8" in check.message
    assert AMX_SAFE_CMAKE_ARGS in check.fix and "-DGGML_AMX_INT8=OFF" in check.fix


def test_a_safe_build_or_a_cpu_without_amx_passes() -> None:
    assert check_build(SAFE_BUILD, cpu_flags(CPUINFO)).status is Status.OK
    assert check_build(AMX_BUILD, {"avx2"}).status is Status.OK


def test_memory_check() -> None:
    roomy = parse_meminfo("MemTotal: 16000000 kB\nMemAvailable: 8000000 kB\n")
    assert check_memory(roomy).status is Status.OK
    assert "15.3 GiB total" in check_memory(roomy).message
    tight = parse_meminfo("MemTotal: 16000000 kB\nMemAvailable: 200000 kB\n")
    assert check_memory(tight).status is Status.WARN


def test_gpu_check() -> None:
    assert "none" in check_gpu(None).message
    gpus = parse_nvidia_smi("NVIDIA H100 80GB HBM3, 81559 MiB\n\n")
    assert check_gpu(gpus).message == "NVIDIA H100 80GB HBM3, 81559 MiB"
    assert check_cores(2).message == "2 cores"


def test_smoke_results() -> None:
    assert check_smoke(0, "llama.cpp smoke test passed").status is Status.OK
    crashed = check_smoke(-11, "")
    assert crashed.status is Status.FAIL and "signal 11" in crashed.message
    assert "GGML_AMX_TILE=OFF" in crashed.fix
    assert "timed out" in check_smoke(None, "").message


def test_port_check() -> None:
    assert check_port("127.0.0.1:11435", listening=False, is_hearth=False).status is Status.OK
    assert check_port("127.0.0.1:11435", listening=True, is_hearth=True).status is Status.OK
    taken = check_port("127.0.0.1:11435", listening=True, is_hearth=False)
    assert taken.status is Status.FAIL and "HEARTH_HOST" in taken.fix


def test_models_that_do_not_fit_are_named() -> None:
    assert check_models([]).status is Status.OK
    fine = check_models([ModelFit("a:1", 100, 1000)])
    assert fine.status is Status.OK and "a:1" in fine.message
    big = check_models([ModelFit("a:1", 100, 1000), ModelFit("b:2", 5000, 1000)])
    assert big.status is Status.WARN and "b:2" in big.message and "a:1" not in big.message
    assert "hearth plan" in big.fix
    hint = check_models([ModelFit("b:2", 5000, 1000, fitting_quant="Q4_K_M")])
    assert "b:2 (fits as Q4_K_M)" in hint.message
