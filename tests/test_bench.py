"""bench/gpu.py runs here on the tests' tiny models (a GPU runs it at real sizes)."""
import pytest

pytest.importorskip("diffusers")


def test_gpu_bench_runs_tiny_on_the_cpu_and_reports_both_sides(capsys):
    from bench.gpu import main
    results = main(["--tiny", "--steps", "3", "--repeats", "1"])
    assert [r["model"] for r in results] == ["ltx", "wan"]
    for r in results:
        assert r["job"] == "64x64x17"                                   # the tiny job, snapped by neither model
        assert r["engine"]["wall_s"] > 0 and r["pipeline"]["wall_s"] > 0
        assert 0 < r["engine"]["s_per_step"] < r["engine"]["wall_s"] and 0 < r["pipeline"]["s_per_step"] < r["pipeline"]["wall_s"]
        assert r["step_ratio"] == pytest.approx(r["engine"]["s_per_step"] / r["pipeline"]["s_per_step"])
    table = capsys.readouterr().out
    assert table.count("| ltx |") == 1 and table.count("| wan |") == 1
