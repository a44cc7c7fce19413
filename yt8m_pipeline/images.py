"""Container images of the components: the ONE place components and the compile step read.

Locally (kfp.local SubprocessRunner) the image is not used: components run in this
virtual environment. On Vertex, pin images by digest (a mutable tag gives stale cache
hits): set YT8M_CPU_IMAGE / YT8M_GPU_IMAGE when compiling.
"""

import os

CPU_IMAGE = os.environ.get("YT8M_CPU_IMAGE", "us-docker.pkg.dev/your-project/yt8m/yt8m-cpu:0.1.0")
GPU_IMAGE = os.environ.get("YT8M_GPU_IMAGE", "us-docker.pkg.dev/your-project/yt8m/yt8m-gpu:0.1.0")
