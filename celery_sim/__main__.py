from celery_sim.cli import cli

cli(prog_name="python -m celery_sim")
