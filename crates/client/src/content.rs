//! The content store over containerd's Content service.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime};

use berth_core::content::{ContentStore, ContentWriter, Info, Status, WriterOptions};
use berth_core::{Digest, Error, ErrorKind, Result};
use containerd_client::services::v1::{
    content_client::ContentClient, AbortRequest, DeleteContentRequest, Info as PbInfo, InfoRequest,
    ListContentRequest, ListStatusesRequest, ReadContentRequest, Status as PbStatus, StatusRequest,
    UpdateRequest, WriteAction, WriteContentRequest, WriteContentResponse,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use crate::{from_labels, from_time, request, status_to_error, to_labels, to_time};

/// The largest data payload of one Write message; larger writes are split (containerd's
/// `content.Copy` uses 1 MiB buffers too).
const WRITE_CHUNK: usize = 1 << 20;

/// How long a committed writer waits for the server to close the Write stream.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// A [`ContentStore`] reached through the Content service of berthd or containerd.
///
/// Cloning is cheap: clones share the channel.
#[derive(Debug, Clone)]
pub struct RemoteContentStore {
    channel: Channel,
}

impl RemoteContentStore {
    /// A store speaking over `channel` (see [`crate::connect`]).
    pub fn new(channel: Channel) -> Self {
        RemoteContentStore { channel }
    }

    fn client(&self) -> ContentClient<Channel> {
        ContentClient::new(self.channel.clone()).max_decoding_message_size(crate::MAX_MESSAGE_SIZE)
    }
}

fn info_from_pb(info: PbInfo) -> Result<Info> {
    let digest = Digest::parse(&info.digest)
        .map_err(|e| Error::internal(format!("server sent an invalid digest: {e}")))?;
    Ok(Info {
        digest,
        size: info.size,
        created_at: to_time(info.created_at),
        updated_at: to_time(info.updated_at),
        labels: to_labels(info.labels),
    })
}

fn info_to_pb(info: Info) -> PbInfo {
    PbInfo {
        digest: info.digest.to_string(),
        size: info.size,
        created_at: from_time(info.created_at),
        updated_at: from_time(info.updated_at),
        labels: from_labels(info.labels),
    }
}

fn status_from_pb(st: PbStatus) -> Status {
    Status {
        reference: st.r#ref,
        offset: st.offset,
        total: st.total,
        expected: parse_optional_digest(&st.expected),
        started_at: to_time(st.started_at),
        updated_at: to_time(st.updated_at),
    }
}

fn parse_optional_digest(s: &str) -> Option<Digest> {
    if s.is_empty() {
        None
    } else {
        Digest::parse(s).ok()
    }
}

fn missing(what: &str) -> Error {
    Error::internal(format!("server response lacks {what}"))
}

impl ContentStore for RemoteContentStore {
    type Writer = RemoteWriter;

    async fn info(&self, ns: &str, digest: &Digest) -> Result<Info> {
        let req = InfoRequest {
            digest: digest.to_string(),
        };
        let resp = self
            .client()
            .info(request(req, ns, None))
            .await
            .map_err(status_to_error)?;
        info_from_pb(resp.into_inner().info.ok_or_else(|| missing("info"))?)
    }

    async fn update(&self, ns: &str, info: Info, fieldpaths: &[String]) -> Result<Info> {
        let req = UpdateRequest {
            info: Some(info_to_pb(info)),
            // As containerd's client: no mask at all when no paths are given.
            update_mask: (!fieldpaths.is_empty()).then(|| prost_types::FieldMask {
                paths: fieldpaths.to_vec(),
            }),
        };
        let resp = self
            .client()
            .update(request(req, ns, None))
            .await
            .map_err(status_to_error)?;
        info_from_pb(resp.into_inner().info.ok_or_else(|| missing("info"))?)
    }

    async fn list(&self, ns: &str, filters: &[String]) -> Result<Vec<Info>> {
        let req = ListContentRequest {
            filters: filters.to_vec(),
        };
        let mut stream = self
            .client()
            .list(request(req, ns, None))
            .await
            .map_err(status_to_error)?
            .into_inner();
        let mut out = Vec::new();
        while let Some(batch) = stream.message().await.map_err(status_to_error)? {
            for info in batch.info {
                out.push(info_from_pb(info)?);
            }
        }
        Ok(out)
    }

    async fn delete(&self, ns: &str, digest: &Digest) -> Result<()> {
        let req = DeleteContentRequest {
            digest: digest.to_string(),
        };
        self.client()
            .delete(request(req, ns, None))
            .await
            .map_err(status_to_error)?;
        Ok(())
    }

    async fn read_at(&self, ns: &str, digest: &Digest, offset: i64, len: usize) -> Result<Vec<u8>> {
        if len == 0 {
            // A size of 0 means "to the end" on the wire.
            return Ok(Vec::new());
        }
        let size = i64::try_from(len).unwrap_or(i64::MAX);
        let req = ReadContentRequest {
            digest: digest.to_string(),
            offset,
            size,
        };
        let mut stream = self
            .client()
            .read(request(req, ns, None))
            .await
            .map_err(status_to_error)?
            .into_inner();
        let mut out = Vec::new();
        while let Some(chunk) = stream.message().await.map_err(status_to_error)? {
            out.extend_from_slice(&chunk.data);
            if out.len() >= len {
                out.truncate(len);
                break;
            }
        }
        Ok(out)
    }

    async fn status(&self, ns: &str, reference: &str) -> Result<Status> {
        let req = StatusRequest {
            r#ref: reference.to_string(),
        };
        let resp = self
            .client()
            .status(request(req, ns, None))
            .await
            .map_err(status_to_error)?;
        Ok(status_from_pb(
            resp.into_inner().status.ok_or_else(|| missing("status"))?,
        ))
    }

    async fn list_statuses(&self, ns: &str, filters: &[String]) -> Result<Vec<Status>> {
        let req = ListStatusesRequest {
            filters: filters.to_vec(),
        };
        let resp = self
            .client()
            .list_statuses(request(req, ns, None))
            .await
            .map_err(status_to_error)?;
        Ok(resp
            .into_inner()
            .statuses
            .into_iter()
            .map(status_from_pb)
            .collect())
    }

    async fn abort(&self, ns: &str, reference: &str) -> Result<()> {
        let req = AbortRequest {
            r#ref: reference.to_string(),
        };
        self.client()
            .abort(request(req, ns, None))
            .await
            .map_err(status_to_error)?;
        Ok(())
    }

    async fn writer(&self, ns: &str, options: WriterOptions) -> Result<RemoteWriter> {
        RemoteWriter::open(self.client(), ns, options).await
    }
}

/// A writer on one ingest, holding the server-side lock on its ref for as long as its Write
/// stream is open: until it is committed or dropped.
pub struct RemoteWriter {
    tx: Option<mpsc::Sender<WriteContentRequest>>,
    responses: tonic::Streaming<WriteContentResponse>,
    reference: String,
    expected: Option<Digest>,
    total: i64,
    offset: i64,
    started_at: SystemTime,
    updated_at: SystemTime,
    digest: Option<Digest>,
}

impl fmt::Debug for RemoteWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteWriter")
            .field("reference", &self.reference)
            .field("offset", &self.offset)
            .field("total", &self.total)
            .field("expected", &self.expected)
            .field("digest", &self.digest)
            .finish_non_exhaustive()
    }
}

impl RemoteWriter {
    /// Open the Write stream with a STAT message and wait for the server's answer (which carries
    /// the ingest's current offset when it is resumed).
    async fn open(
        mut client: ContentClient<Channel>,
        ns: &str,
        options: WriterOptions,
    ) -> Result<RemoteWriter> {
        let (tx, rx) = mpsc::channel(2);
        let first = WriteContentRequest {
            action: WriteAction::Stat as i32,
            r#ref: options.reference.clone(),
            total: options.size,
            expected: options
                .digest
                .as_ref()
                .map(Digest::to_string)
                .unwrap_or_default(),
            ..Default::default()
        };
        tx.send(first)
            .await
            .map_err(|_| Error::internal("write stream closed before it opened"))?;
        let req = request(ReceiverStream::new(rx), ns, options.lease.as_deref());
        let responses = client
            .write(req)
            .await
            .map_err(status_to_error)?
            .into_inner();
        let mut w = RemoteWriter {
            tx: Some(tx),
            responses,
            reference: options.reference,
            expected: options.digest,
            total: options.size,
            offset: 0,
            started_at: SystemTime::UNIX_EPOCH,
            updated_at: SystemTime::UNIX_EPOCH,
            digest: None,
        };
        let resp = w.receive().await?;
        w.absorb(&resp);
        Ok(w)
    }

    /// Wait for the next response; a stream that ends instead reports its status as the error.
    async fn receive(&mut self) -> Result<WriteContentResponse> {
        match self.responses.message().await {
            Ok(Some(resp)) => Ok(resp),
            Ok(None) => Err(Error::new(
                ErrorKind::Unavailable,
                format!(
                    "write stream for ref {} closed by the server",
                    self.reference
                ),
            )),
            Err(status) => Err(status_to_error(status)),
        }
    }

    /// Send one request and wait for its response.
    async fn send(&mut self, req: WriteContentRequest) -> Result<WriteContentResponse> {
        let tx = self.tx.as_ref().ok_or_else(|| {
            Error::failed_precondition(format!("writer for ref {} is closed", self.reference))
        })?;
        if tx.send(req).await.is_err() {
            // The request stream is gone: the server ended the call, and its status says why.
            return match self.receive().await {
                Err(e) => Err(e),
                Ok(_) => Err(Error::internal(format!(
                    "write stream for ref {} closed",
                    self.reference
                ))),
            };
        }
        self.receive().await
    }

    /// Take in what a response says of the ingest.
    fn absorb(&mut self, resp: &WriteContentResponse) {
        self.offset = resp.offset;
        if resp.total > 0 {
            self.total = resp.total;
        }
        if resp.started_at.is_some() {
            self.started_at = to_time(resp.started_at);
        }
        self.updated_at = match resp.updated_at {
            Some(_) => to_time(resp.updated_at),
            None => SystemTime::now(),
        };
        if let Some(d) = parse_optional_digest(&resp.digest) {
            self.digest = Some(d);
        }
    }

    fn write_request(&self, data: Vec<u8>) -> WriteContentRequest {
        WriteContentRequest {
            action: WriteAction::Write as i32,
            r#ref: self.reference.clone(),
            offset: self.offset,
            data,
            ..Default::default()
        }
    }
}

impl ContentWriter for RemoteWriter {
    async fn status(&self) -> Result<Status> {
        Ok(Status {
            reference: self.reference.clone(),
            offset: self.offset,
            total: self.total,
            expected: self.expected.clone(),
            started_at: self.started_at,
            updated_at: self.updated_at,
        })
    }

    async fn write(&mut self, data: &[u8]) -> Result<()> {
        for chunk in data.chunks(WRITE_CHUNK) {
            let before = self.offset;
            let resp = self.send(self.write_request(chunk.to_vec())).await?;
            self.absorb(&resp);
            let written = resp.offset - before;
            if written != chunk.len() as i64 {
                return Err(Error::new(
                    ErrorKind::DataLoss,
                    format!(
                        "short write to ref {}: wrote {written} of {} bytes",
                        self.reference,
                        chunk.len()
                    ),
                ));
            }
        }
        Ok(())
    }

    async fn truncate(&mut self, size: i64) -> Result<()> {
        if size == self.offset {
            return Ok(());
        }
        if size != 0 {
            return Err(Error::invalid_argument(format!(
                "truncate of ref {} to {size} bytes: only truncation to 0 is supported",
                self.reference
            )));
        }
        // A write at offset 0 makes the server cut the ingest back to nothing.
        self.offset = 0;
        let resp = self.send(self.write_request(Vec::new())).await?;
        self.absorb(&resp);
        Ok(())
    }

    fn digest(&self) -> Digest {
        self.digest
            .clone()
            .unwrap_or_else(|| Digest::sha256_of(&[]))
    }

    async fn commit(
        mut self,
        size: i64,
        expected: Option<Digest>,
        labels: BTreeMap<String, String>,
    ) -> Result<Digest> {
        let req = WriteContentRequest {
            action: WriteAction::Commit as i32,
            r#ref: self.reference.clone(),
            offset: self.offset,
            total: size,
            expected: expected.as_ref().map(Digest::to_string).unwrap_or_default(),
            labels: from_labels(labels),
            ..Default::default()
        };
        let resp = self.send(req).await?;
        self.absorb(&resp);
        // Close our side and let the server finish the call, so the ref's lock is released
        // before commit returns.
        self.tx = None;
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
            while let Ok(Some(_)) = self.responses.message().await {}
        })
        .await;
        if size > 0 && resp.offset != size {
            return Err(Error::failed_precondition(format!(
                "unexpected commit size {}, expected {size}",
                resp.offset
            )));
        }
        let digest = parse_optional_digest(&resp.digest).ok_or_else(|| missing("digest"))?;
        if let Some(expected) = expected {
            if digest != expected {
                return Err(Error::failed_precondition(format!(
                    "unexpected commit digest {digest}, expected {expected}"
                )));
            }
        }
        Ok(digest)
    }
}
