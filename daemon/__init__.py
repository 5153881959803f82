"""The chatsync service: sync engine, triggers, control socket, CLI and configuration."""
