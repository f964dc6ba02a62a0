"""Service layer: one class per resource. Validation, domain scoping and orchestration; no database calls."""
