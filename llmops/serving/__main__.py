"""`python -m llmops.serving [--port N ...]`: the gateway without the llmops CLI around it."""

from llmops.serving.cli import serve_app

if __name__ == "__main__":
    serve_app(prog_name="llmops serve")
