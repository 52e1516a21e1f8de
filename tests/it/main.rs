//! One integration binary: Drover on real sockets (127.0.0.1, OS-assigned ports) against
//! in-test backends. `support` starts Drover and the fakes.

mod support;

mod access_log;
mod admin;
mod alias;
mod cli;
mod deploy;
mod dns;
mod dns_hostile;
mod docs;
mod env_config;
mod fake_marathon;
mod fake_masters;
mod fuzz_corpus;
mod grpc;
mod health;
mod http;
mod http_hostile;
mod instances;
mod labels;
mod marathon;
mod marathon_apps;
mod mesos;
mod mesos_stream;
mod mlb;
mod overload;
mod proxy_protocol;
mod reload;
mod status_page;
mod tcp;
mod tls;
mod udp;
mod upgrade;
mod websocket;
mod workers;
mod zk;
