# Sourced (not executed: keep it non-executable) by the official MariaDB image's entrypoint on
# the first start of an empty data directory, so docker_process_sql is available.
#
# On every node: the accounts, created with sql_log_bin=0 so they never replicate and both
# nodes start with the same (empty) GTID state; then replication from the peer (MPP_PEER),
# which may not be up yet: MASTER_CONNECT_RETRY=1 keeps trying. On the node with
# MPP_CREATE_SCHEMA=1 only: the monitoring database (the poller needs at least one table in it)
# and the application's, which reach the peer through replication.
#
# Accounts (docs: README.md "What a poller needs in MySQL"):
#   monitor        SLAVE MONITOR, BINLOG MONITOR, PROCESS on *.*, SELECT on mppmon.*  (mpp-poller)
#   haproxy_check  no password, no privileges  (HAProxy's option mysql-check)
#   repl           REPLICATION SLAVE  (the peer's IO thread)
#   app            ALL on app.*  (clients through HAProxy)
set -eu

mpp_secret() { head -n1 "/run/secrets/$1" | tr -d '\r\n'; }

mpp_monitor_pw=$(mpp_secret mysql_monitor_password)
mpp_repl_pw=$(mpp_secret mysql_repl_password)
mpp_app_pw=$(mpp_secret mysql_app_password)

docker_process_sql <<SQL
SET sql_log_bin=0;
CREATE USER 'repl'@'%' IDENTIFIED BY '${mpp_repl_pw}';
GRANT REPLICATION SLAVE ON *.* TO 'repl'@'%';
CREATE USER 'monitor'@'%' IDENTIFIED BY '${mpp_monitor_pw}';
GRANT SLAVE MONITOR, BINLOG MONITOR, PROCESS ON *.* TO 'monitor'@'%';
GRANT SELECT ON mppmon.* TO 'monitor'@'%';
CREATE USER 'haproxy_check'@'%';
CREATE USER 'app'@'%' IDENTIFIED BY '${mpp_app_pw}';
GRANT ALL ON app.* TO 'app'@'%';
SET sql_log_bin=1;
CHANGE MASTER TO MASTER_HOST='${MPP_PEER}', MASTER_PORT=3306, MASTER_USER='repl',
  MASTER_PASSWORD='${mpp_repl_pw}', MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1,
  MASTER_HEARTBEAT_PERIOD=1;
SQL

if [ "${MPP_CREATE_SCHEMA:-0}" = 1 ]; then
    docker_process_sql <<SQL
CREATE DATABASE mppmon;
CREATE TABLE mppmon.heartbeat (server_id INT UNSIGNED PRIMARY KEY, ts TIMESTAMP(6));
CREATE DATABASE app;
CREATE TABLE app.t (id INT AUTO_INCREMENT PRIMARY KEY, port INT, v VARCHAR(64));
SQL
fi

unset mpp_monitor_pw mpp_repl_pw mpp_app_pw
