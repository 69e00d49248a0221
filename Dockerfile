# One image for every role: the web service (default command), and with another
# command a Dask scheduler or worker (compose.yaml). The scheduler and the workers import
# this project (the swap function is pickled by reference), hence one image, not two, with
# the project installed as `make install` does it.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
# Dependencies first: this layer is rebuilt only when requirements.txt changes. Every
# pinned wheel (dlib-bin, opencv-python-headless, av) is self-contained: no compiler
# and no system libraries beyond the slim image are needed.
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY . .
# The project itself (pyproject.toml), editable like `make install`: handlers find static/
# next to the code; the dependencies are the pinned ones installed above.
RUN pip install --no-deps --no-build-isolation -e .

# Not root. /data is created owned by this user so that a fresh named volume mounted
# there inherits the ownership; the app and the Dask workers run as the same uid, so
# the files one writes on the shared volume are the other's to move and read.
RUN useradd --uid 1000 --create-home faceswap && mkdir /data && chown faceswap /data
USER faceswap
VOLUME /data
EXPOSE 8888

CMD ["python", "server.py", "--host", "0.0.0.0", "--data-dir", "/data"]
