//! `gp-sim`: runs the PDS simulator and the simulators of all four GP systems over a
//! synthetic population, for vendors who want to poke the native formats by hand.
#![allow(clippy::print_stdout)] // a CLI whose whole output is the URLs it prints

use std::net::{Ipv4Addr, SocketAddr};

use clap::Parser;
use gp_sim::{
    Population, PopulationSpec, SimStore, start_emis, start_microtest, start_pds, start_tpp,
    start_vision,
};
use tokio::net::TcpListener;

/// Run the GP system simulators on loopback.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Population seed: the same seed always gives the same patients.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// EMIS port on 127.0.0.1 (0 = any free port).
    #[arg(long, default_value_t = 0)]
    emis_port: u16,
    /// TPP SystmOne port on 127.0.0.1 (0 = any free port).
    #[arg(long, default_value_t = 0)]
    tpp_port: u16,
    /// Vision port on 127.0.0.1 (0 = any free port).
    #[arg(long, default_value_t = 0)]
    vision_port: u16,
    /// Microtest Evolution port on 127.0.0.1 (0 = any free port).
    #[arg(long, default_value_t = 0)]
    microtest_port: u16,
    /// PDS port on 127.0.0.1 (0 = any free port).
    #[arg(long, default_value_t = 0)]
    pds_port: u16,
    /// Practices per GP system.
    #[arg(long, default_value_t = 2)]
    practices_per_system: usize,
    /// Patients per practice.
    #[arg(long, default_value_t = 12)]
    patients_per_practice: usize,
    /// Print the patient manifest (JSON) before serving.
    #[arg(long)]
    manifest: bool,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let spec = PopulationSpec {
        practices_per_system: args.practices_per_system,
        patients_per_practice: args.patients_per_practice,
        ..PopulationSpec::sandbox()
    };
    let population = Population::generate(args.seed, &spec);
    if args.manifest {
        println!(
            "{}",
            serde_json::to_string_pretty(&population.manifest_patients())?
        );
    }
    let store = SimStore::new(population);
    let loopback = |port| SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let pds = start_pds(
        store.clone(),
        TcpListener::bind(loopback(args.pds_port)).await?,
    )
    .await?;
    let emis = start_emis(
        store.clone(),
        TcpListener::bind(loopback(args.emis_port)).await?,
    )
    .await?;
    let tpp = start_tpp(
        store.clone(),
        TcpListener::bind(loopback(args.tpp_port)).await?,
    )
    .await?;
    let vision = start_vision(
        store.clone(),
        TcpListener::bind(loopback(args.vision_port)).await?,
    )
    .await?;
    let microtest = start_microtest(
        store,
        TcpListener::bind(loopback(args.microtest_port)).await?,
    )
    .await?;
    println!(
        "PDS:  {}/personal-demographics/FHIR/R4/Patient/9000000009",
        pds.base_url()
    );
    println!("EMIS:      {}/emis/health", emis.base_url());
    println!("SystmOne:  {}/systmone/api/v1/health", tpp.base_url());
    println!("Vision:    {}/vision/health", vision.base_url());
    println!("Evolution: {}/evolution/v2/health", microtest.base_url());
    println!("seed {}; Ctrl-C to stop", args.seed);
    tokio::signal::ctrl_c().await?;
    for sim in [emis, tpp, vision, microtest, pds] {
        sim.shutdown().await;
    }
    Ok(())
}
