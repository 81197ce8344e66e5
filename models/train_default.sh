#!/usr/bin/env bash
# Reproduce the shipped default model (models/default/) with the project's own commands.
# Resumable: re-running continues an interrupted stage from its *_last.pth; finished stages are kept.
# Usage: models/train_default.sh [STAGES...]   (default: tokenizer data language code tool_calling quantize)
# Env: RUN (work dir, default runs/default), THREADS (torch threads, default 1),
#      STEPS1/STEPS2/STEPS3 (optimizer steps per stage), EXAMPLES3 (stage-3 conversations),
#      REPLAY (share of stage 1-2 rows replayed during stage 3).
set -euo pipefail
cd "$(dirname "$0")/.."
A=".venv/bin/assistant"
RUN=${RUN:-runs/default}
THREADS=${THREADS:-1}
export OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS
STDLIB=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')
STEPS1=${STEPS1:-250}; STEPS2=${STEPS2:-100}; STEPS3=${STEPS3:-3000}
EXAMPLES3=${EXAMPLES3:-3000}; REPLAY=${REPLAY:-0.15}
ARCH=(--architecture dense --model-size nano --d-model 256 --n-layers 6 --n-heads 8 --d-ff 1024
      --max-seq-len 1024 --use-rmsnorm --use-rope --use-swiglu --tie-embeddings)
stages=("$@"); [ ${#stages[@]} -eq 0 ] && stages=(tokenizer data language code tool_calling quantize)

run_stage() {  # stage, extra args...: resume when an interrupted run exists
  local stage=$1; shift
  if [ -f "$RUN/$stage/${stage}_model_last.pth" ]; then
    $A train --stage "$stage" --resume --output-dir "$RUN/$stage" "$@"
  else
    $A train --stage "$stage" --output-dir "$RUN/$stage" "$@"
  fi
}

for s in "${stages[@]}"; do
  case $s in
    tokenizer)
      $A data tokenizer --input /usr/share/doc --code-input "$STDLIB" /usr/bin --glob '*.py' \
        --vocab-size 8192 --output "$RUN/tokenizer.json" ;;
    data)
      $A data prepare --stage language --input /usr/share/doc --tokenizer "$RUN/tokenizer.json" --output-dir "$RUN/data"
      $A data prepare --stage code --input "$STDLIB" /usr/bin /usr/sbin --glob '*.py' \
        --tokenizer "$RUN/tokenizer.json" --output-dir "$RUN/data" ;;
    language)
      run_stage language "${ARCH[@]}" --data-dir "$RUN/data" --seq-len 512 --batch-size 8 \
        --steps-per-epoch "$STEPS1" --learning-rate 1e-3 --warmup-steps 20 --eval-interval 50 --log-interval 10 ;;
    code)
      run_stage code --checkpoint "$RUN/language/language_model_best.pth" --data-dir "$RUN/data" --seq-len 512 \
        --batch-size 8 --steps-per-epoch "$STEPS2" --learning-rate 5e-4 --warmup-steps 10 --eval-interval 50 --log-interval 10 ;;
    tool_calling)
      [ -f "$RUN/data/tool_calling_manifest.json" ] || \
        $A data prepare --stage tool_calling --tokenizer "$RUN/tokenizer.json" --output-dir "$RUN/data" \
          --num-examples "$EXAMPLES3"
      run_stage tool_calling --checkpoint "$RUN/code/code_model_best.pth" --data-dir "$RUN/data" --max-seq-len 2048 --seq-len 1024 \
        --batch-size 4 --steps-per-epoch "$STEPS3" --learning-rate 5e-4 --warmup-steps 30 --eval-interval 250 --log-interval 25 \
        --replay-fraction "$REPLAY" ;;
    quantize)
      mkdir -p models/default
      $A quantize --checkpoint "$RUN/tool_calling/tool_calling_model_best.pth" --quantization int8 \
        --output models/default/model_int8.pth --data-dir "$RUN/data" --stage code
      cp "$RUN/tokenizer.json" models/default/tokenizer.json ;;
    *) echo "unknown stage $s" >&2; exit 2 ;;
  esac
done
