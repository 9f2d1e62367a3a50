from django.contrib import admin

from accounts.forms import AdminLoginForm
from accounts.models import ApiToken

# The admin's login says why a throttled login is refused (accounts/throttle.py).
admin.site.login_form = AdminLoginForm


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("name", "user", "key_prefix", "created_at", "last_used_at")
    list_filter = ("created_at", "last_used_at")
    search_fields = ("name", "user__username", "key_prefix")
    raw_id_fields = ("user",)
    readonly_fields = ("key_hash", "key_prefix", "created_at", "last_used_at")
