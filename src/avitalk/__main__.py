from avitalk.cli import run

run()
