#!/usr/bin/env python3
"""Neptune Guard's CDK app: `python app.py` (or `npx cdk synth`) synthesizes offline into cdk.out/.

Settings are the `neptune-guard:*` context values of cdk.json; the CDK CLI passes them (and any
`-c` overrides) itself, and a plain `python app.py` reads them from cdk.json.
"""

import json
import os
from pathlib import Path

from aws_cdk import App

from stacks.app import build

if "CDK_OUTDIR" in os.environ:  # run by the CDK CLI, which passes context and the output folder
    app = App()
else:
    here = Path(__file__).parent
    app = App(context=json.loads((here / "cdk.json").read_text())["context"], outdir=str(here / "cdk.out"))
build(app)
app.synth()
