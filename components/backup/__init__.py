"""Backups: the S3 backup store (`component.BackupStore`), the scheduled backup jobs (`jobs`) and the
pgBackRest configuration both they and `infra backup` use (`pgbackrest`)."""
