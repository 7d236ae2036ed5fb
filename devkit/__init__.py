"""Development helpers shared by the tests and the benchmarks (not used to serve): synthetic image files
(`devkit.images`) and the Procfile's gunicorn command started on a free loopback port (`devkit.server`)."""
