#!/usr/bin/env bash
# The GPU check of insid3lab, in one run of a few minutes (at most ~9) on one CUDA device:
#   1. the CUDA tests (pytest -m cuda): CUDA clustering = scikit-learn, CUDA decode = CPU decode,
#      batched = one by one, fast mode agrees with float32;
#   2. the benchmark with random ViT-L/16 weights at 1024 px, float32 then bfloat16, each checked
#      against the GPU targets (per-target time, decode, cold start, peak memory, IoU with float32).
# Results (JSON and logs) go to $OUT (default: ./gpu_check_out). Exit status 0 when all passed.
#
# Usage: bash benchmarks/gpu_check.sh            (from anywhere; PYTHON=... selects the interpreter)
set -u
cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"
OUT="${OUT:-$PWD/gpu_check_out}"
MODEL="${INSID3LAB_BENCH_MODEL:-random:vitl16}"
TARGETS="${INSID3LAB_BENCH_TARGETS:-8}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export INSID3LAB_CACHE_DIR="$OUT/cache"
status=0

echo "== environment"
"$PY" - <<'EOF' 2>&1 | tee "$OUT/environment.txt"
import platform, torch
print("python", platform.python_version(), "| torch", torch.__version__, "| cuda", torch.version.cuda,
      "| device", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "NONE")
for name in ("transformers", "sklearn", "scipy", "PIL", "platformdirs", "pytest"):
    try:
        print(f"  {name} {__import__(name).__version__}")
    except Exception as e:  # noqa: BLE001
        print(f"  {name} MISSING ({type(e).__name__}: {e})")
EOF
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "FAIL: no CUDA device visible to $PY"; exit 1
fi

echo "== pytest -m cuda"
timeout 150 "$PY" -m pytest -m cuda -q -p no:cacheprovider -W ignore::pytest.PytestUnknownMarkWarning \
    tests/stages/test_fast_paths.py tests/bench/test_bench.py > "$OUT/pytest_cuda.log" 2>&1
rc=$?
tail -n 15 "$OUT/pytest_cuda.log"
if [ $rc -ne 0 ]; then echo "FAIL: pytest -m cuda (exit $rc)"; status=1; else echo "PASS: pytest -m cuda"; fi

for dtype in float32 bfloat16; do
    echo "== bench $MODEL, 1024 px, $dtype"
    timeout 200 "$PY" benchmarks/bench_insid3.py --model "$MODEL" --device cuda --image-size 1024 \
        --targets "$TARGETS" --autocast "$dtype" --check gpu --quiet --out "$OUT/bench_vitl16_${dtype}.json" \
        > "$OUT/bench_${dtype}.log" 2>&1
    rc=$?
    grep -v "^insid3lab: " "$OUT/bench_${dtype}.log" | tail -n 25
    if [ $rc -ne 0 ]; then echo "FAIL: bench $dtype (exit $rc)"; status=1; fi
done

echo "== summary"
grep -h "PASS\|FAIL" "$OUT/bench_float32.log" "$OUT/bench_bfloat16.log" 2>/dev/null | sed 's/^ *//'
[ $status -eq 0 ] && echo "gpu_check: all passed" || echo "gpu_check: something failed (logs in $OUT)"
exit $status
