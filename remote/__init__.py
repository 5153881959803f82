"""The app's PostgreSQL: schema migrations, and pushing changed rows to it."""
