"""``benchmarks/quant.py --smoke`` runs its GPU code path (GEMMs, prefill under each fp8 policy) on tiny shapes and
writes a complete report; on a CPU the fp8/int8 kernels are the exact emulations. Nothing here checks a timing."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_quant_benchmark_smoke_writes_every_measurement(tmp_path):
    out = tmp_path / "quant.json"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "quant.py"), "--mode", "gpu", "--smoke", "--reps", "1",
                    "--warmup", "0", "--no-compile", "--out", str(out)], check=True, cwd=ROOT, capture_output=True)
    report = json.loads(out.read_text())
    assert [g["gemm"] for g in report["gemms"]] == ["w13 gate+up", "w2 down"]
    for g in report["gemms"]:
        failed = {k: v for k, v in g.items() if isinstance(v, dict) and "error" in v}
        assert not failed
        assert g["fp8_rel_err_vs_bf16"] < 0.1 and g["int8_rel_err_vs_bf16"] < 0.05
    stages = report["prefill"]
    assert len(stages) == 4 and stages[0]["stage"] == "bf16"
    assert all(isinstance(s["prefill_s"], float) for s in stages)
    assert stages[1]["replaced"] == 2 * (4 - 2)                          # tiny: 4 blocks, FFN only, ends skipped
    assert stages[1]["weight_bytes"] < stages[0]["weight_bytes"]
    assert all(s["last_logits_rel_err_vs_bf16"] < 0.2 for s in stages)
