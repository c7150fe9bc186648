"""Dashboard views: server-rendered, staff-only, read paths cheap on large tables."""
