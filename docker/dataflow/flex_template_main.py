"""The Dataflow Flex Template's main (FLEX_TEMPLATE_PYTHON_PY_FILE in docker/dataflow/Dockerfile).

Google's template launcher runs ``python <this file> --input=... --output=... --num_classes=...
--folds=... --holdout=... --standardized=... <Dataflow pipeline options>`` on the launcher VM. It
lives in its own folder in the image so that running it as a script puts nothing of the project on sys.path[0];
the work is ``yt8m_pipeline.dataflow.launch_main`` (the installed package).
"""

import sys

from yt8m_pipeline.dataflow import launch_main

if __name__ == "__main__":
    sys.exit(launch_main())
