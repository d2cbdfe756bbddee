from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

TEMPLATE = Path(settings.BASE_DIR) / "deploy" / "nginx" / "local.conf.template"


class Command(BaseCommand):
    help = (
        "Write DIR/nginx.conf for the run command's nginx from deploy/nginx/local.conf.template, "
        "with the body limit of this configuration (MOC_MAX_REQUEST_BYTES)."
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("dir", type=Path, help="nginx's own folder (its prefix): temp files, pid, log")
        parser.add_argument("--listen", required=True, help="address:port nginx listens on")
        parser.add_argument("--web", required=True, help="address:port of gunicorn")
        parser.add_argument("--ws", required=True, help="address:port of uvicorn")

    def handle(self, *args: Any, **options: Any) -> None:
        target: Path = options["dir"].resolve()
        # Placeholders are @NAME@ rather than $NAME: nginx's own variables use the dollar sign.
        values = {
            "@NGINX_DIR@": str(target),
            "@LISTEN@": options["listen"],
            "@WEB_UPSTREAM@": options["web"],
            "@WS_UPSTREAM@": options["ws"],
            "@MAX_BODY_BYTES@": str(settings.MOC_MAX_REQUEST_BYTES),
        }
        text = TEMPLATE.read_text()
        for key, value in values.items():
            text = text.replace(key, value)
        target.mkdir(parents=True, exist_ok=True)
        (target / "nginx.conf").write_text(text)
