"""Kinema Studio: a local browser app over the pipelines (`kinema studio`); needs the `studio` extra (Gradio)."""
