import { Client, Connection } from '@temporalio/client';

export interface TemporalSettings {
  TEMPORAL_ADDRESS: string;
  TEMPORAL_NAMESPACE: string;
}

/** A client bound to the configured namespace; close its connection on shutdown. */
export async function connectTemporal(config: TemporalSettings): Promise<Client> {
  const connection = await Connection.connect({ address: config.TEMPORAL_ADDRESS, connectTimeout: '5s' });
  return new Client({ connection, namespace: config.TEMPORAL_NAMESPACE });
}
