"""Hub connectors: Civitai (REST v1, httpx) and Hugging Face (huggingface_hub), each behind the
small interface in :mod:`consentry.hubs.base`, plus the local fake hubs used by tests and the demo."""
