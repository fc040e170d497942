"""The imaging and model package, no Django: mri/ decodes and checks scans and runs the model;
workers/ runs it in Celery; apps/ is the website; training/ makes models (pyproject.toml
[tool.importlinter] keeps it so)."""
