"""`llmops init`: scaffold a new project's asset folders, settings and CI/CD."""

from llmops.scaffold.project import InitOptions, Written, default_name, plan, write

__all__ = ["InitOptions", "Written", "default_name", "plan", "write"]
