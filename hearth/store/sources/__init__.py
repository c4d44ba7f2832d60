"""Where models come from: Python packages now; Hugging Face, OCI registries, folders later."""
