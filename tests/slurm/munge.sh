# Sourced by the Slurm tests. start_munged: munge authenticates every Slurm message; starts its
# daemon (as the munge user, with a key made once) unless one runs, and checks that it works.
start_munged() {
  if ! pgrep -x munged > /dev/null; then
    if [ ! -s /etc/munge/munge.key ]; then
      dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
    fi
    chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    runuser -u munge -- /usr/sbin/munged
  fi
  munge -n | unmunge > /dev/null || { echo "munge does not work" >&2; return 1; }
}
