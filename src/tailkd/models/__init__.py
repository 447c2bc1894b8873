"""Students (and, later, teaching assistants): loading, batched generation and scoring."""

from tailkd.models.generation import generate_texts
from tailkd.models.student import Student, load_student

__all__ = ["Student", "generate_texts", "load_student"]
