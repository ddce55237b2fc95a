//! Compute jobs, their runs' outputs, and credit.

use super::*;

impl HubClient {
    /// Submits a compute job whose module and inputs are staged.
    pub async fn submit_job(
        &self,
        token: &str,
        request: &surplus_protocol::JobRequest,
    ) -> Result<surplus_protocol::Job> {
        let request = self
            .request(Method::POST, "/v1/compute/jobs", Some(token))
            .json(request);
        self.json(request).await
    }

    /// A job of the caller's, with its tasks.
    pub async fn job(&self, token: &str, id: Uuid) -> Result<surplus_protocol::Job> {
        let request = self.request(Method::GET, &format!("/v1/compute/jobs/{id}"), Some(token));
        self.json(request).await
    }

    /// The caller's jobs, newest first.
    pub async fn jobs(&self, token: &str) -> Result<Vec<surplus_protocol::Job>> {
        let request = self.request(Method::GET, "/v1/compute/jobs", Some(token));
        self.json(request).await
    }

    pub async fn cancel_job(&self, token: &str, id: Uuid) -> Result<surplus_protocol::Job> {
        let request = self.request(
            Method::POST,
            &format!("/v1/compute/jobs/{id}/cancel"),
            Some(token),
        );
        self.json(request).await
    }

    /// The caller's compute credit.
    pub async fn credits(&self, token: &str) -> Result<surplus_protocol::Credits> {
        let request = self.request(Method::GET, "/v1/credits", Some(token));
        self.json(request).await
    }

    /// Uploads the output of a run this device ran.
    pub async fn upload_output(&self, device: &str, run: Uuid, output: Vec<u8>) -> Result<BlobRef> {
        let hash = blake3::hash(&output).to_hex().to_string();
        let request = self
            .request(
                Method::PUT,
                &format!("/v1/device/runs/{run}/outputs/{hash}"),
                Some(device),
            )
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .header(reqwest::header::CONTENT_LENGTH, output.len())
            .body(output);
        self.json(request).await
    }
}
