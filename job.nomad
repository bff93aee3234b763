# navidrome-litefs: Navidrome on a LiteFS-replicated database, primary chosen
# through a Consul lease.
#
# Every allocation runs the same container. LiteFS mounts /data and takes part
# in the lease; the supervisor (LiteFS's exec) runs Navidrome only on the
# primary and registers that node alone as the Consul service "navidrome".
# That is why there is no Nomad service block for Navidrome: Nomad would
# register every node, replicas included.
#
# Each Nomad client needs (docs/deployment.md has the details):
# - host volumes "navidrome-litefs" (local disk, per node), "navidrome-shared"
#   (the same shared filesystem on every node) and "navidrome-music";
# - the docker plugin allowing the sys_admin capability (allow_caps);
# - a Consul agent listening on the node's address, port 8500.
#
# Run:  nomad job run -var image=<registry>/navidrome-litefs:<version> job.nomad

variable "image" {
  type        = string
  description = "The image built from this repository's Dockerfile."
}

job "navidrome" {
  type = "service"

  group "navidrome" {
    # One primary and one warm replica; more nodes only add failover candidates.
    count = 2

    # A second instance on the same host would share its fate, and its
    # per-node LiteFS volume.
    constraint {
      operator = "distinct_hosts"
      value    = "true"
    }

    network {
      # The label "navidrome" is what the supervisor's registration defaults
      # read (NOMAD_HOST_IP_navidrome, NOMAD_HOST_PORT_navidrome).
      port "navidrome" {
        to = 4533
      }
      port "litefs" {
        to = 20202
      }
    }

    # LiteFS's data.dir: this node's copy of the database. Local and
    # persistent; never shared between nodes.
    volume "litefs" {
      type      = "host"
      source    = "navidrome-litefs"
      read_only = false
    }

    # Navidrome's cache and backups, which must stay off the LiteFS mount.
    volume "shared" {
      type      = "host"
      source    = "navidrome-shared"
      read_only = false
    }

    volume "music" {
      type      = "host"
      source    = "navidrome-music"
      read_only = true
    }

    # One allocation at a time, and only after the previous one is healthy,
    # so a deployment never stops the primary and its replica together.
    update {
      max_parallel     = 1
      health_check     = "checks"
      min_healthy_time = "30s"
      healthy_deadline = "5m"
      auto_revert      = true
    }

    # Restarts are per allocation; "delay" keeps retrying in place instead of
    # failing the allocation, which would move it off the node that holds its
    # LiteFS volume.
    restart {
      attempts = 3
      interval = "5m"
      delay    = "15s"
      mode     = "delay"
    }

    # Every node's LiteFS API, for monitoring. Deliberately not the
    # "navidrome" service: that one points at the primary only.
    service {
      name     = "navidrome-litefs"
      port     = "litefs"
      provider = "consul"

      check {
        type     = "http"
        path     = "/info"
        interval = "10s"
        timeout  = "2s"
      }
    }

    task "navidrome" {
      driver = "docker"

      config {
        image = var.image
        ports = ["navidrome", "litefs"]

        # LiteFS is the entrypoint and does not reap orphaned grandchildren.
        init = true

        # FUSE without a privileged container: mount(2) needs SYS_ADMIN and
        # the FUSE device; Docker's default AppArmor profile denies mounts.
        cap_add      = ["SYS_ADMIN"]
        security_opt = ["apparmor=unconfined"]
        devices = [
          {
            host_path      = "/dev/fuse"
            container_path = "/dev/fuse"
          }
        ]
      }

      # The signal init passes to LiteFS, which forwards it to the supervisor.
      # The supervisor's stop takes up to 1s (deregister) + NDLS_STOP_TIMEOUT
      # (Navidrome), then LiteFS releases the lease and unmounts; the timeout
      # leaves room for that and stays within Nomad's default max_kill_timeout
      # (30s), which would silently cap a larger value.
      kill_signal  = "SIGTERM"
      kill_timeout = "20s"

      volume_mount {
        volume      = "litefs"
        destination = "/var/lib/litefs"
      }

      volume_mount {
        volume      = "shared"
        destination = "/shared_data"
      }

      volume_mount {
        volume      = "music"
        destination = "/music"
        read_only   = true
      }

      env {
        # litefs.yml: the lease.
        LITEFS_CONSUL_KEY    = "litefs/navidrome"
        LITEFS_CANDIDATE     = "true"
        LITEFS_ADVERTISE_URL = "http://${NOMAD_HOST_ADDR_litefs}"
        # The node's own agent, for both LiteFS (which needs the scheme) and
        # the supervisor. A container cannot reach the host's 127.0.0.1.
        CONSUL_HTTP_ADDR = "http://${attr.unique.network.ip-address}:8500"

        # Supervisor. The host name is also LiteFS's lease.hostname.
        NDLS_HOSTNAME     = "${node.unique.name}"
        NDLS_STOP_TIMEOUT = "10s"

        # Navidrome: only the database on the LiteFS mount, through DbPath in
        # the image's config file (Navidrome ignores ND_DBPATH). The data
        # folder, where uploaded images go (artwork/), cannot be the mount,
        # which refuses mkdir: it is shared storage, like the cache and the
        # backups, so a new primary finds them after a failover.
        ND_CONFIGFILE      = "/etc/navidrome/navidrome.toml"
        ND_DATAFOLDER      = "/shared_data"
        ND_MUSICFOLDER     = "/music"
        ND_CACHEFOLDER     = "/shared_data/cache"
        ND_BACKUP_PATH     = "/shared_data/backup"
        ND_BACKUP_SCHEDULE = "0 4 * * *"
        ND_BACKUP_COUNT    = "7"
        ND_PLUGINS_ENABLED = "false"
      }

      resources {
        cpu    = 1000
        memory = 1024
      }
    }
  }
}
