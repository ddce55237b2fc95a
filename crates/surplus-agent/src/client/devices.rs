//! A device's place at the hub: registering it, its heartbeats, its instruction queue and what it holds.

use super::*;

impl HubClient {
    pub async fn register_device(&self, session: &str, name: &str) -> Result<DeviceCredentials> {
        self.post(
            "/v1/devices",
            Some(session),
            &RegisterDevice {
                name: name.to_owned(),
            },
        )
        .await
    }

    pub async fn devices(&self, session: &str) -> Result<Vec<Device>> {
        self.json(self.request(Method::GET, "/v1/devices", Some(session)))
            .await
    }

    pub async fn revoke_device(&self, session: &str, device_id: Uuid) -> Result<()> {
        self.send(self.request(
            Method::DELETE,
            &format!("/v1/devices/{device_id}"),
            Some(session),
        ))
        .await?;
        Ok(())
    }

    /// Deregisters the calling device (it leaves for good): its credential stops working.
    pub async fn leave(&self, device: &str) -> Result<()> {
        self.send(self.request(Method::DELETE, "/v1/device", Some(device)))
            .await?;
        Ok(())
    }

    /// What the calling device holds for others, and how far its hand-over is.
    pub async fn holdings(&self, device: &str) -> Result<surplus_protocol::Holdings> {
        self.json(self.request(Method::GET, "/v1/device/holdings", Some(device)))
            .await
    }

    /// Every blob the hub records the calling device holding for someone.
    pub async fn retain(&self, device: &str) -> Result<surplus_protocol::RetainList> {
        self.json(self.request(Method::GET, "/v1/device/retain", Some(device)))
            .await
    }

    pub async fn probe_devices(&self, session: &str) -> Result<ProbeRequested> {
        self.json(self.request(Method::POST, "/v1/devices/probe", Some(session)))
            .await
    }

    pub async fn allocations(&self, session: &str) -> Result<Vec<Allocation>> {
        self.json(self.request(Method::GET, "/v1/allocations", Some(session)))
            .await
    }

    pub async fn heartbeat(
        &self,
        device: &str,
        report: &StatusReport,
    ) -> Result<HeartbeatResponse> {
        self.post("/v1/device/heartbeat", Some(device), report)
            .await
    }

    /// Waits up to `wait` for instructions (a long poll).
    pub async fn poll(&self, device: &str, wait: Duration) -> Result<Vec<Instruction>> {
        let request = self
            .request(
                Method::GET,
                &format!("/v1/device/instructions?wait={}", wait.as_secs()),
                Some(device),
            )
            .timeout(wait + Duration::from_secs(30));
        Ok(self.json::<InstructionBatch>(request).await?.instructions)
    }

    pub async fn acknowledge(
        &self,
        device: &str,
        instruction: Uuid,
        ack: &Acknowledgement,
    ) -> Result<()> {
        let path = format!("/v1/device/instructions/{instruction}/ack");
        self.send(self.request(Method::POST, &path, Some(device)).json(ack))
            .await?;
        Ok(())
    }
}
