"""First start: if nobody can log in yet, create an operator with a random password and print it once."""

import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand

ROLES = ["Operator", "Live trader", "Strategy author"]


class Command(BaseCommand):
    help = "Create the first login (username 'operator', all roles, admin) when no user exists."

    def handle(self, *args, **options):
        User = get_user_model()
        if User.objects.exists():
            return
        password = secrets.token_urlsafe(12)
        user = User.objects.create_user(username="operator", password=password, is_staff=True, is_superuser=True)
        user.groups.set(Group.objects.filter(name__in=ROLES))
        self.stdout.write(self.style.SUCCESS("Created the first login (shown once; change it in the admin):"))
        self.stdout.write(f"    username: operator\n    password: {password}")
