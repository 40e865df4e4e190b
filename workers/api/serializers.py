from __future__ import annotations

from rest_framework import serializers

from workers.models import Worker


class WorkerSerializer(serializers.ModelSerializer):
    queues = serializers.ListField(child=serializers.CharField())
    capabilities = serializers.ListField(child=serializers.CharField())
    utilisation = serializers.FloatField(read_only=True, help_text="Active runs divided by concurrency.")
    dedicated = serializers.SerializerMethodField(help_text="True when the worker serves only this tenant.")

    class Meta:
        model = Worker
        fields = [
            "id",
            "name",
            "hostname",
            "dedicated",
            "queues",
            "capabilities",
            "concurrency",
            "version",
            "status",
            "active_runs",
            "utilisation",
            "started_at",
            "last_heartbeat_at",
            "created_at",
            "updated_at",
        ]

    def get_dedicated(self, worker: Worker) -> bool:
        return bool(worker.tenant_id)
