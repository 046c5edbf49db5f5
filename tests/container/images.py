"""Build the image with Podman and run its exported filesystem as a container runtime would.

No registry is reachable here, so the base image (a build argument of the Containerfile)
is a local stand-in made from Debian packages: mmdebstrap makes a root filesystem (cached
on disk, keyed by its inputs), `podman import` makes it an image, and
`base.Containerfile` makes it look like the official Python image.

`podman run` is refused by this sandbox's runtime, so a container is run by hand: the
image's filesystem is exported to a directory, and its entrypoint runs there under
`chroot --userspec` with the image's user and environment, in a mount namespace of its
own (the tree bind-mounted on itself, read-only if asked; /dev and /proc from the host,
a tmpfs on /tmp). As root that is `unshare --mount`; as any other user it is the same
inside `podman unshare` (a user namespace mapping the user's subordinate ids, so the
image's user 10001 is a real, unprivileged user). The network is the host's.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
# The stand-in base: what mmdebstrap installs, and from where.
DEBIAN = {
    "suite": "bookworm",
    "mirror": "http://deb.debian.org/debian",
    "variant": "apt",
    "include": ["python3", "python3-venv", "ca-certificates"],
}
SBIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# What a runtime would do in the container's mount namespace, then exec the command.
_ENTER = """set -e
tree=$1; mode=$2; pidfile=$3; shift 3
mount --bind "$tree" "$tree"
mount --rbind /dev "$tree/dev"
mount --rbind /proc "$tree/proc"
mount -t tmpfs -o mode=1777,size=64m tmpfs "$tree/tmp"
if [ "$mode" = ro ]; then mount -o remount,bind,ro "$tree"; fi
if [ -n "$pidfile" ]; then echo $$ > "$pidfile"; fi
exec "$@"
"""


def cache_dir() -> Path:
    """Kept between runs on this machine: the base's root filesystem and Podman's storage."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    path = Path(base) / "placement-manager" / "container"
    path.mkdir(parents=True, exist_ok=True)
    return path


def key_of(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def rootless() -> bool:
    return os.getuid() != 0


@dataclass
class Podman:
    """Podman on storage of its own in the cache (overlay, else vfs): the tests' images
    never mix with the user's, and build layers are reused from run to run."""

    root: Path
    runroot: Path
    driver: str = "overlay"
    steps: list[str] = field(default_factory=list)  # what was done, and how long it took

    @classmethod
    def for_tests(cls) -> Podman:
        runroot = Path(tempfile.gettempdir()) / f"placement-manager-podman-{os.getuid()}"
        podman = cls(cache_dir() / "storage", runroot)
        for driver in ("overlay", "vfs"):
            podman.driver = driver
            if podman.run("info", check=False).returncode == 0:
                return podman
        raise RuntimeError(f"podman does not work here: {podman.run('info', check=False)}")

    def argv(self, *args: str) -> list[str]:
        storage = ["--root", str(self.root), "--runroot", str(self.runroot)]
        return ["podman", *storage, "--storage-driver", self.driver, *args]

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            self.argv(*args), capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"podman {' '.join(args)} failed:\n{result.stderr[-4000:]}")
        return result

    def exists(self, image: str) -> bool:
        return self.run("image", "exists", image, check=False).returncode == 0

    def build(self, containerfile: Path, context: Path, tag: str, *options: str) -> None:
        log = cache_dir() / f"build-{tag.rsplit('/', 1)[-1].replace(':', '-')}.log"
        with timed(self.steps, f"podman build {tag}"), log.open("w") as sink:
            result = subprocess.run(
                self.argv(
                    "build",
                    "--isolation=chroot",
                    "--network=host",
                    "--layers",
                    "-f",
                    str(containerfile),
                    "-t",
                    tag,
                    *options,
                    str(context),
                ),
                stdout=sink,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                check=False,
            )
        if result.returncode != 0:
            raise RuntimeError(f"podman build {tag} failed; see {log}:\n{log.read_text()[-4000:]}")

    def config(self, image: str) -> ImageConfig:
        raw = json.loads(self.run("image", "inspect", "--format", "{{json .Config}}", image).stdout)
        return ImageConfig(
            user=raw.get("User") or "0",
            env=dict(item.split("=", 1) for item in raw.get("Env") or []),
            entrypoint=list(raw.get("Entrypoint") or []),
            cmd=list(raw.get("Cmd") or []),
        )

    def export(self, image: str, tree: Path) -> None:
        """The image's filesystem in `tree` (as the runtime would mount it)."""
        with timed(self.steps, f"export {image}"):
            container = self.run("create", image).stdout.strip()
            try:
                tree.mkdir(parents=True)
                export = subprocess.Popen(
                    self.argv("export", container), stdout=subprocess.PIPE, stdin=subprocess.DEVNULL
                )
                assert export.stdout is not None
                # Device nodes cannot be made without privileges; /dev comes from the host.
                untar = subprocess.run(
                    [
                        "tar",
                        "-x",
                        "--no-same-owner",
                        "--preserve-permissions",
                        "--exclude=dev/*",
                        "-C",
                        str(tree),
                    ],
                    stdin=export.stdout,
                    capture_output=True,
                    text=True,
                    check=False,
                )
                export.stdout.close()
                assert export.wait() == 0, "podman export failed"
                assert untar.returncode == 0, untar.stderr
            finally:
                self.run("rm", container, check=False)
        tree.chmod(0o755)

    def drop_untagged(self) -> None:
        """Images left untagged by rebuilding: pruned, so storage does not grow run after
        run (the layers of the current images stay, for the next build)."""
        self.run("image", "prune", "--force", check=False)


@dataclass(frozen=True)
class ImageConfig:
    user: str
    env: dict[str, str]
    entrypoint: list[str]
    cmd: list[str]


@contextmanager
def timed(steps: list[str], what: str) -> Iterator[None]:
    started = time.monotonic()
    yield
    steps.append(f"{what}: {time.monotonic() - started:.1f} s")


@contextmanager
def locked() -> Iterator[None]:
    """One test run at a time builds in the shared cache."""
    with (cache_dir() / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def base_image(podman: Podman) -> str:
    """The stand-in for the official Python image, built once per set of inputs."""
    rootfs_key = key_of(DEBIAN, _mmdebstrap_version())
    bundle = CA_BUNDLE.read_bytes()
    containerfile = HERE / "base.Containerfile"
    key = key_of(rootfs_key, containerfile.read_text(), bundle.hex())
    tag = f"localhost/placement-test-base:{key}"
    if podman.exists(tag):
        podman.steps.append(f"base image {tag}: cached")
        return tag
    rootfs_image = f"localhost/placement-test-rootfs:{rootfs_key}"
    if not podman.exists(rootfs_image):
        tarball = _rootfs(rootfs_key, podman.steps)
        with timed(podman.steps, f"podman import {rootfs_image}"):
            podman.run("import", str(tarball), rootfs_image)
    with tempfile.TemporaryDirectory() as context:
        shutil.copy(containerfile, Path(context) / "Containerfile")
        (Path(context) / "ca-certificates.crt").write_bytes(bundle)
        podman.build(
            Path(context) / "Containerfile",
            Path(context),
            tag,
            "--build-arg",
            f"ROOTFS={rootfs_image}",
        )
    return tag


def _mmdebstrap_version() -> str:
    out = subprocess.run(["mmdebstrap", "--version"], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def _rootfs(key: str, steps: list[str]) -> Path:
    """Debian's root filesystem for the base, made by mmdebstrap once per key."""
    tarball = cache_dir() / f"rootfs-{key}.tar"
    if tarball.exists():
        steps.append(f"root filesystem {tarball.name}: cached")
        return tarball
    partial = tarball.with_suffix(".partial.tar")
    log = cache_dir() / "mmdebstrap.log"
    with timed(steps, f"mmdebstrap {tarball.name}"), log.open("w") as sink:
        result = subprocess.run(
            [
                "mmdebstrap",
                f"--variant={DEBIAN['variant']}",
                f"--include={','.join(DEBIAN['include'])}",
                str(DEBIAN["suite"]),
                str(partial),
                str(DEBIAN["mirror"]),
            ],
            stdin=subprocess.DEVNULL,  # with no mirror given it would read sources from stdin
            stdout=sink,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if result.returncode != 0:
        raise RuntimeError(f"mmdebstrap failed; see {log}:\n{log.read_text()[-4000:]}")
    partial.rename(tarball)
    return tarball


def etc_hosts(tree: Path, names: Sequence[str]) -> None:
    """What a runtime writes: localhost, and here the stack's service names on loopback
    (everything shares this machine's network)."""
    (tree / "etc" / "hosts").write_text(
        f"127.0.0.1\tlocalhost {' '.join(names)}\n::1\tlocalhost ip6-localhost\n"
    )


def home_of(tree: Path, uid: str) -> str:
    for line in (tree / "etc" / "passwd").read_text().splitlines():
        fields = line.split(":")
        if len(fields) > 5 and fields[2] == uid:
            return fields[5]
    return "/"


def in_tree(
    tree: Path,
    config: ImageConfig,
    argv: Sequence[str],
    env: dict[str, str],
    *,
    read_only: bool = False,
    user: str | None = None,
    pidfile: Path | None = None,
) -> list[str]:
    """The host command that runs `argv` in `tree` as the image's user (or `user`) with
    the image's environment plus `env`, and nothing of the host's."""
    userspec = user or config.user
    uid, _, gid = userspec.partition(":")
    environment = {"HOME": home_of(tree, uid), **config.env, **env}
    chroot = shutil.which("chroot", path=SBIN_PATH) or "chroot"
    command = [
        "/usr/bin/env",
        "-i",
        *(f"{name}={value}" for name, value in environment.items()),
        chroot,
        f"--userspec={uid}:{gid or uid}",
        str(tree),
        *argv,
    ]
    mode = "ro" if read_only else "rw"
    enter = ["/bin/sh", "-c", _ENTER, "enter", str(tree), mode, str(pidfile or ""), *command]
    unshare = [
        shutil.which("unshare", path=SBIN_PATH) or "unshare",
        "--mount",
        "--propagation",
        "private",
    ]
    if rootless():
        return ["podman", "unshare", *unshare, *enter]
    return [*unshare, *enter]


def how_it_runs(config: ImageConfig) -> str:
    """One line for the test output."""
    if rootless():
        namespace = f"`podman unshare` (user {os.getuid()}'s subordinate ids) + `unshare --mount`"
    else:
        namespace = "`unshare --mount` as root"
    return (
        f"exported image filesystem, {namespace}, `chroot --userspec={config.user}`, "
        "image environment only, host network, /tmp a tmpfs"
    )


def podman_run_refusal(podman: Podman, image: str) -> str:
    """Why the tests do not use `podman run`: its first error line here (or that it works)."""
    result = podman.run("run", "--rm", "--network=host", image, "--help", check=False)
    if result.returncode == 0:
        return "`podman run` works here too; the tests use the exported tree"
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    return f"`podman run` is refused here: {lines[-1] if lines else result.returncode}"
