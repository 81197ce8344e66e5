#!/usr/bin/env bash
# Reproduce the shipped default model (models/default/) with the project's own commands.
# Resumable: re-running continues an interrupted stage from its *_last.pth; finished stages are kept.
# Usage: models/train_default.sh [STAGES...]   (default: tokenizer data language code tool_calling quantize more quantize_more
#        third quantize_third)
# Env: RUN (work dir, default runs/default), DEVICE (auto: cuda > mps > cpu), THREADS (CPU torch threads),
#      STEPS1/STEPS2/STEPS3/STEPS4/STEPS5 (optimizer steps per stage and stage-3 pass), BATCH, EXAMPLES3 (stage-3 conversations),
#      REPLAY (share of stage 1-2 rows replayed during stage 3), SANDBOX_IMAGE (docker image for stage-3 data;
#      default: the [sandbox] setting).
# The shipped model was trained on one H100 (about 9 minutes for all stages and passes); see models/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
A=".venv/bin/assistant"
PY=".venv/bin/python"
RUN=${RUN:-runs/default}
THREADS=${THREADS:-2}
export OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS
STDLIB=$($PY -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')
PACKAGES=$($PY -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')  # installed packages' sources
DEVICE=${DEVICE:-auto}; BATCH=${BATCH:-32}
STEPS1=${STEPS1:-500}; STEPS2=${STEPS2:-1200}; STEPS3=${STEPS3:-1800}; STEPS4=${STEPS4:-1200}; STEPS5=${STEPS5:-2400}
EXAMPLES3=${EXAMPLES3:-12000}; EXAMPLES5=${EXAMPLES5:-16000}; REPLAY=${REPLAY:-0.15}
ARCH=(--architecture dense --model-size nano --d-model 512 --n-layers 8 --n-heads 8 --d-ff 1408
      --max-seq-len 2048 --use-rmsnorm --use-rope --use-swiglu --tie-embeddings)
COMMON=(--tokenizer "$RUN/tokenizer.json" --data-dir "$RUN/data" --device "$DEVICE" --use-amp --seq-len 1024 --batch-size "$BATCH")
stages=("$@"); [ ${#stages[@]} -eq 0 ] && stages=(tokenizer data language code tool_calling quantize more quantize_more third quantize_third)

run_stage() {  # stage, output folder name, extra args...: resume when an interrupted run exists
  local stage=$1 dir="$RUN/$2"; shift 2
  if [ -f "$dir/${stage}_model_last.pth" ]; then
    $A train --stage "$stage" --resume --output-dir "$dir" "$@"
  else
    $A train --stage "$stage" --output-dir "$dir" "$@"
  fi
}

another_pass() {  # data dir, output dir, seed, conversations, steps, learning rate, warmup steps
  local data="$RUN/$1"
  [ -f "$data/tool_calling_manifest.json" ] || \
    $A data prepare --stage tool_calling --tokenizer "$RUN/tokenizer.json" --output-dir "$data" \
      --num-examples "$4" --heldout-examples 300 --seed "$3" ${SANDBOX_IMAGE:+--sandbox-image "$SANDBOX_IMAGE"}
  cp -n "$RUN"/data/language_* "$RUN"/data/code_* "$data/" 2>/dev/null || true  # replay rows
  run_stage tool_calling "$2" --checkpoint models/default/model_int8.pth --tokenizer "$RUN/tokenizer.json" \
    --data-dir "$data" --device "$DEVICE" --use-amp --seq-len 1024 --batch-size "$BATCH" --steps-per-epoch "$5" \
    --learning-rate "$6" --warmup-steps "$7" --eval-interval 200 --log-interval 50 --replay-fraction "$REPLAY"
}
quantize_pass() {  # output dir of a pass: its best checkpoint becomes the shipped int8 model
  $A quantize --checkpoint "$RUN/$1/tool_calling_model_best.pth" --quantization int8 \
    --output models/default/model_int8.pth --data-dir "$RUN/data" --stage code
}

for s in "${stages[@]}"; do
  case $s in
    tokenizer)
      $A data tokenizer --input /usr/share/doc --code-input "$STDLIB" /usr/bin --glob '*.py' \
        --vocab-size 8192 --output "$RUN/tokenizer.json" ;;
    data)
      $A data prepare --stage language --input /usr/share/doc --tokenizer "$RUN/tokenizer.json" --output-dir "$RUN/data"
      $A data prepare --stage code --input "$STDLIB" "$PACKAGES" /usr/bin --glob '*.py' \
        --tokenizer "$RUN/tokenizer.json" --output-dir "$RUN/data" ;;
    language)
      run_stage language language "${ARCH[@]}" "${COMMON[@]}" --steps-per-epoch "$STEPS1" --learning-rate 8e-4 --warmup-steps 50 \
        --eval-interval 250 --log-interval 50 ;;
    code)
      run_stage code code --checkpoint "$RUN/language/language_model_best.pth" "${COMMON[@]}" --steps-per-epoch "$STEPS2" \
        --learning-rate 6e-4 --warmup-steps 50 --eval-interval 300 --log-interval 50 ;;
    tool_calling)
      [ -f "$RUN/data/tool_calling_manifest.json" ] || \
        $A data prepare --stage tool_calling --tokenizer "$RUN/tokenizer.json" --output-dir "$RUN/data" \
          --num-examples "$EXAMPLES3" --heldout-examples 300 ${SANDBOX_IMAGE:+--sandbox-image "$SANDBOX_IMAGE"}
      run_stage tool_calling tool_calling --checkpoint "$RUN/code/code_model_best.pth" "${COMMON[@]}" --steps-per-epoch "$STEPS3" \
        --learning-rate 4e-4 --warmup-steps 50 --eval-interval 200 --log-interval 50 --replay-fraction "$REPLAY" ;;
    quantize)
      mkdir -p models/default
      $A quantize --checkpoint "$RUN/tool_calling/tool_calling_model_best.pth" --quantization int8 \
        --output models/default/model_int8.pth --data-dir "$RUN/data" --stage code
      cp "$RUN/tokenizer.json" models/default/tokenizer.json ;;
    more)  # stage 3 continued from the int8 model (trained from its dequantized weights) on a second, fresh set
      another_pass data_more tool_calling_more 1338 "$EXAMPLES3" "$STEPS4" 2e-4 30 ;;
    quantize_more)
      quantize_pass tool_calling_more ;;
    third)  # stage 3 a third time, from that int8 model, on dataset version 4 (multi-module projects)
      another_pass data_v4 tool_calling_v4 1340 "$EXAMPLES5" "$STEPS5" 3e-4 50 ;;
    quantize_third)
      quantize_pass tool_calling_v4 ;;
    *) echo "unknown stage $s" >&2; exit 2 ;;
  esac
done
