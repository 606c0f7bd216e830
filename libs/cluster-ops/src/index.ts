export * from './exec/exec-session';
