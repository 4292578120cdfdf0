import sys, runpy
from tests.conftest import *
sys.argv=["bench.py"]+sys.argv[1:]
runpy.run_path("scripts/bench.py", run_name="__main__")
