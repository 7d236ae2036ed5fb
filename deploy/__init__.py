"""The public start command (start.py) and the front server's configuration (nginx.conf)."""
