from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

TEMPLATE = Path(settings.BASE_DIR) / "deploy" / "nginx" / "local.conf.template"
# The template's upload location lies between these lines; it is written once per upload path.
UPLOAD_BLOCK = re.compile(r"^[ \t]*# @UPLOAD@ begin\n(.*?)^[ \t]*# @UPLOAD@ end\n", re.DOTALL | re.MULTILINE)


class Command(BaseCommand):
    help = (
        "Write DIR/nginx.conf for the run command's nginx from deploy/nginx/local.conf.template, "
        "with the body limits of this configuration (MOC_MAX_REQUEST_BYTES, and MOC_UPLOAD_PATHS' own)."
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("dir", type=Path, help="nginx's own folder (its prefix): temp files, pid, log")
        parser.add_argument("--listen", required=True, help="address:port nginx listens on")
        parser.add_argument("--web", required=True, help="address:port of gunicorn")
        parser.add_argument("--ws", required=True, help="address:port of uvicorn")

    def handle(self, *args: Any, **options: Any) -> None:
        target: Path = options["dir"].resolve()
        uploads: Mapping[str, int] = settings.MOC_UPLOAD_PATHS
        for path in uploads:
            # nginx would read a space, brace or semicolon in it as the end of the location.
            if not path.startswith("/") or any(c.isspace() or c in "{};'\"" for c in path):
                raise CommandError(f"MOC_UPLOAD_PATHS: {path!r} is not a plain absolute path.")
        # Placeholders are @NAME@ rather than $NAME: nginx's own variables use the dollar sign.
        values = {
            "@NGINX_DIR@": str(target),
            "@LISTEN@": options["listen"],
            "@WEB_UPSTREAM@": options["web"],
            "@WS_UPSTREAM@": options["ws"],
            "@MAX_BODY_BYTES@": str(settings.MOC_MAX_REQUEST_BYTES),
            "@UPLOAD_LIMITS@": "\n".join(f"        {path} {limit};" for path, limit in uploads.items()),
        }
        text = upload_locations(TEMPLATE.read_text(), uploads)
        for key, value in values.items():
            text = text.replace(key, value)
        target.mkdir(parents=True, exist_ok=True)
        (target / "nginx.conf").write_text(text)


def upload_locations(text: str, uploads: Mapping[str, int]) -> str:
    """`text` with its upload location (the lines between UPLOAD_BLOCK's marker lines) written once
    for each upload path, with that path's limit, in place of the markers and the block."""
    found = UPLOAD_BLOCK.search(text)
    if found is None:
        raise CommandError(
            f"{TEMPLATE} has no upload location between '# @UPLOAD@ begin' and '# @UPLOAD@ end'."
        )
    copies = [
        found[1].replace("@UPLOAD_PATH@", path).replace("@UPLOAD_MAX_BODY_BYTES@", str(limit))
        for path, limit in uploads.items()
    ]
    return text[: found.start()] + "\n".join(copies) + text[found.end() :]
