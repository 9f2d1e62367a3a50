from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create a demo admin login when the site has no users; print the login."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="demo")
        parser.add_argument("--password", default="demo")

    def handle(self, *args, username: str, password: str, **options):
        users = get_user_model().objects
        if not users.exists():
            users.create_superuser(username=username, password=password)
            self.stdout.write(f"Created demo login: {username} / {password}")
        elif users.filter(username=username).exists():
            user = users.get(username=username)
            if user.check_password(password):
                self.stdout.write(f"Demo login: {username} / {password}")
