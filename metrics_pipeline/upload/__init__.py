"""The load-test side: run a test, collect its files and system samples, upload them."""
