"""An app only some workers install: its task id is unknown to the test process."""
