"""Deployment: the Modal app (SGLang + XGrammar on GPUs) and GPU sizing / cost."""
