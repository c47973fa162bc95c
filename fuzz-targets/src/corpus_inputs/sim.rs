//! Inputs for the text targets: the shipped scenarios and presets, the default configurations
//! written by the real serialisers, and a few edge cases.

use tickwire_core::vs::{Enrolment, GsConfig, Measurement, VsConfig};
use tickwire_core::Config;
use tickwire_sim::link::LinkSpec;
use tickwire_sim::scenario::{default_endpoint, BUILTIN};

pub(super) fn sim() -> Vec<(&'static str, Vec<Vec<u8>>)> {
    let text = |s: &str| s.as_bytes().to_vec();
    let endpoint_config = vec![
        text(&toml::to_string(&Config::default()).unwrap()),
        text(&toml::to_string(&default_endpoint()).unwrap()),
        text("seed = 7\nschema_hash = \"00000000000000000000000000000000000000000000000000000000000000ff\"\n[heartbeat]\ninterval_ms = 250\n"),
        text("max_sessions = 4\n[ack_frequency]\nack_eliciting_threshold = 2\n[retry]\nmultiplier = nan\n"),
        text("channels = [{ kind = { reliable = { priority = 1 } } }, { kind = \"unreliable\" }, \"sequenced\"]\nidle_timeout_ms = 1\n"),
        text(concat!(
            "max_permission_violations = 0\n",
            "channels = [\n",
            "  { kind = { reliable = { priority = \"game\" } } },\n",
            "  { kind = \"sequenced\", senders = { roles = [\"player\", \"spectator\"] }, rate_limit = { messages_per_second = 60.0, burst = 10 } },\n",
            "  { kind = { reliable = { priority = \"bulk\" } }, senders = { roles = [\"admin\"], permissions = 2147483648 }, rate_limit = { messages_per_second = 0.5, burst = 2, on_breach = \"close\" } },\n",
            "  { kind = \"unreliable\", senders = { roles = [] }, compress = true },\n",
            "  { kind = \"unreliable\", rate_limit = { messages_per_second = nan, burst = 0 } },\n",
            "]\n",
        )),
    ];

    let vs = VsConfig {
        measurements: vec![Measurement {
            binary_sha256: [0xB1; 32],
            config_sha256: [0xC0; 32],
        }],
        game_servers: vec![
            Enrolment {
                gs_id: 7,
                identity_key: Some([0x11; 32]),
                ak_public: Some(vec![0x00, 0x23, 0x00, 0x0B]),
            },
            Enrolment {
                gs_id: 8,
                identity_key: None,
                ak_public: None,
            },
        ],
        ..VsConfig::default()
    };
    let vs_config = vec![
        text(&toml::to_string(&VsConfig::default()).unwrap()),
        text(&toml::to_string(&vs).unwrap()),
        text("ticket_interval_ms = 0\n[[game_servers]]\ngs_id = 1\nak_public = \"0\"\n"),
    ];
    let gs_config = vec![
        text(&toml::to_string(&GsConfig::default()).unwrap()),
        text("gs_id = 7\nreattest_every = 0\n[reconnect]\nmax_attempts = 0\n"),
    ];

    let mut scenario_toml: Vec<Vec<u8>> = BUILTIN.iter().map(|(_, t)| text(t)).collect();
    scenario_toml.extend([
        text("name = 'x'\nduration_s = 1.0\n"),
        // Found by reasoning: `clients()` overflowed (3 × i64::MAX).
        text("name = \"x\"\nduration_s = 1.0\n[topology]\nservers = 3\nclients_per_server = 9223372036854775807\n"),
        text("name = 'vs'\nduration_s = 2.0\n[vs]\nlink = 'lan'\nverifier = { ticket_interval_ms = 2000, ticket_lifetime_ms = 6000 }\ngame_server = { ticket_starvation_timeout_ms = 10000 }\n"),
        text("name = 'x'\nduration_s = 1.0\n[topology]\nservers = 2\nclients_per_server = 3\nmix = [{ preset = 'mine', weight = 1 }]\n[links.mine]\nlatency = { dist = 'pareto', base_ms = 1.0, scale_ms = 2.0, alpha = 1.5 }\n[[faults]]\nkind = 'crash'\ntarget = 'clients:0..6'\nat_s = 0.5\n"),
    ]);

    let schedule: Vec<u8> = (0..64u16)
        .flat_map(|i| [(i % 7) as u8, (i * 97 % 256) as u8, (i % 6) as u8])
        .collect();
    let mut link_spec: Vec<Vec<u8>> = LinkSpec::PRESETS
        .iter()
        .map(|name| {
            let spec = LinkSpec::preset(name).unwrap();
            [text(&toml::to_string(&spec).unwrap()), vec![0], schedule.clone()].concat()
        })
        .collect();
    link_spec.extend([
        [text("mtu_bytes = 1472\ncorrupt_probability = 0.5\nlatency = { dist = \"normal\", mean_ms = 35.0, sd_ms = 5.0 }\njitter = { max_ms = 10.0, reorder = true }\nloss = { model = \"burst\", mean_loss = 0.015, mean_burst_len = 2.5, slot_ms = 20.0 }\nduplicate = { probability = 0.5, max_delay_ms = 1.0 }\nreorder = { probability = 0.2, delay_ms = 5.0 }\nbandwidth = { rate_kbit_s = 100.0, queue_bytes = 3000 }\n"), vec![0], schedule.clone()].concat(),
        [text("latency = { dist = \"uniform\", min_ms = 5.0, max_ms = 1.0 }\n"), vec![0], schedule].concat(),
        text("corrupt_probability = 2.0\n"),
        // A 1 bit/s link with an unbounded queue: queueing delays near u64::MAX.
        [
            text("bandwidth = { rate_kbit_s = 0.001, queue_bytes = 9000000000000000000 }\n"),
            vec![0],
            [0u8, 0xff, 0xff].repeat(512),
        ]
        .concat(),
    ]);

    vec![
        ("endpoint_config", endpoint_config),
        ("vs_config", vs_config),
        ("gs_config", gs_config),
        ("scenario_toml", scenario_toml),
        ("link_spec", link_spec),
    ]
}
