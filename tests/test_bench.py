"""bench/gpu.py runs here on the tests' tiny models (a GPU runs it at real sizes)."""
import pytest

pytest.importorskip("diffusers")

NEW = ["wan22-5b", "wan22-14b", "ltx2"]   # issue 22's backends


def check_rows(results, models, job):
    assert [r["model"] for r in results] == models
    for r in results:
        assert r["job"] == job and r["memory"] == "none"              # the tiny job, snapped by no model
        assert r["engine"]["wall_s"] > 0 and r["pipeline"]["wall_s"] > 0
        assert 0 < r["engine"]["s_per_step"] < r["engine"]["wall_s"] and 0 < r["pipeline"]["s_per_step"] < r["pipeline"]["wall_s"]
        assert r["step_ratio"] == pytest.approx(r["engine"]["s_per_step"] / r["pipeline"]["s_per_step"])


def test_gpu_bench_runs_tiny_on_the_cpu_and_reports_both_sides(capsys):
    from bench.gpu import main
    results = main(["--tiny", "--steps", "3", "--repeats", "1"])
    check_rows(results, ["ltx", "wan"], "64x64x17")
    table = capsys.readouterr().out
    assert table.count("| ltx |") == 1 and table.count("| wan |") == 1


@pytest.mark.parametrize("model", NEW)
def test_gpu_bench_runs_the_wan22_and_ltx2_models_tiny_on_the_cpu(model, capsys):
    from bench.gpu import main
    results = main(["--tiny", "--models", model, "--steps", "3", "--repeats", "1"])
    check_rows(results, [model], "32x32x17" if model == "ltx2" else "64x64x17")
    assert capsys.readouterr().out.count(f"| {model} |") == 1


@pytest.mark.parametrize("model", NEW)
def test_gpu_bench_real_wan22_and_ltx2_configs_build_at_their_released_sizes(model):
    """On the meta device (no memory): diffusers takes the configs, and the fit check counts what they hold."""
    import torch

    from bench.gpu import SHAPES, _default_dtype, real_components
    with torch.device("meta"), _default_dtype(torch.bfloat16):
        parts = real_components(model)
    held = sum(p.numel() for m in parts.values() if isinstance(m, torch.nn.Module) for p in m.parameters()) / 1e9
    assert held == pytest.approx(SHAPES[model].held_b, rel=0.02)
    assert parts["transformer"].dtype == torch.bfloat16
    if model == "wan22-5b":
        assert parts["expand_timesteps"] and parts["vae"].config.z_dim == 48 == parts["transformer"].config.in_channels
    if model == "wan22-14b":
        assert parts["boundary_ratio"] == 0.875 and parts["transformer_2"].config.num_layers == 40


def test_gpu_bench_plan_shrinks_jobs_and_offloads_what_does_not_fit(capsys):
    from bench.gpu import fits, job_for, main
    assert main(["--dry-run", "--models", *NEW, "--steps", "6", "--repeats", "1"]) == []
    out = capsys.readouterr().out
    assert "wan22-5b 1280x704x121 at 24 fps" in out and "wan22-14b 1280x720x81 at 16 fps" in out
    assert "ltx2 768x512x121 at 24 fps" in out and "over the ~9 min" in out    # A14B at 720p alone is ~20 min
    assert job_for("wan22-14b", False, 33, "832x480") == dict(width=832, height=480, frames=33, fps=16)
    assert fits("wan22-14b", 80 * 10**9) and not fits("wan22-14b", 48 * 10**9)  # two 14 B experts: 58 GB in bf16
    assert fits("ltx2", 80 * 10**9) and not fits("ltx2", 48 * 10**9) and not fits("wan22-5b", 24 * 10**9)
