"""The course's own tools: ``check`` (exercise checkers), ``cards`` (paper cards) and
``plots`` (figures)."""
