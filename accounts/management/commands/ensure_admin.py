import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "On a site with no users, create an admin with a random password and print it once."
        " Does nothing once any user exists."
    )

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin")

    def handle(self, *args, username: str, **options):
        users = get_user_model().objects
        if users.exists():
            return
        password = secrets.token_urlsafe(12)
        users.create_superuser(username=username, password=password)
        self.stdout.write(
            f"Created an admin login (shown only this once): {username} / {password}\n"
            f"Change it at /admin/password_change/ or with: manage.py changepassword {username}"
        )
